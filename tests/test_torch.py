"""Agreement with PyTorch's CPU LayerNorm and autograd, where torch is importable."""

import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import layer_norm_longdouble, max_rel_error

from .helpers import CONTRACT, agree64

torch = pytest.importorskip("torch")


def torch_layer_norm(x, gamma, beta, dy, eps=1e-5):
    xt = torch.tensor(x, requires_grad=True)
    gt = None if gamma is None else torch.tensor(gamma, requires_grad=True)
    bt = None if beta is None else torch.tensor(beta, requires_grad=True)
    y = torch.nn.functional.layer_norm(xt, (x.shape[-1],), gt, bt, eps)
    y.backward(torch.tensor(dy))
    grad = lambda t: None if t is None else t.grad.numpy()  # noqa: E731
    return y.detach().numpy(), xt.grad.numpy(), grad(gt), grad(bt)


# Each result is within its own bound of the exact one: lnlib's contract (tests/helpers.py) and, for
# PyTorch, the same model for its own arithmetic (float32 sums: about log2(D) u32 kappa, kappa ~ 10 for
# dx; float64: agree64(4096) = 9e-12). 10x the contract covers both for D <= 4096.
@pytest.mark.parametrize("dtype,tol", [(np.float64, CONTRACT[np.float64][0]), (np.float32, CONTRACT[np.float32][0])])
@pytest.mark.parametrize("shape", [(5, 16), (2, 3, 100), (1, 4096), (7, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_torch(rng, dtype, tol, shape, affine):
    D = shape[-1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(D).astype(dtype) if affine else None
    beta = rng.standard_normal(D).astype(dtype) if affine else None
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = layer_norm_forward(x, gamma, beta)
    ours = (y, *layer_norm_backward(dy, cache))
    theirs = torch_layer_norm(x, gamma, beta, dy)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype
            assert max_rel_error(a, b) < 10 * tol


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.5])
def test_eps_convention_matches_torch(rng, eps):
    # eps is added to the biased variance inside the square root, as in PyTorch
    x = rng.standard_normal((3, 8)) * 0.01
    y, _ = layer_norm_forward(x, eps=eps)
    yt = torch.nn.functional.layer_norm(torch.tensor(x), (8,), eps=eps).numpy()
    # two float64 evaluations, rows of D = 8; a wrong convention (eps outside the root, unbiased
    # variance) changes y by O(eps / var) = O(0.1) or more at this scale
    assert max_rel_error(y, yt) < agree64(8, kappa=1.0)


def test_nan_handling_matches_torch(rng):
    x = rng.standard_normal((3, 6))
    x[1, 4] = np.nan
    y, _ = layer_norm_forward(x)
    yt = torch.nn.functional.layer_norm(torch.tensor(x), (6,)).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt))


def test_lnlib_at_least_as_accurate_as_torch_at_offset(rng):
    # where they differ, lnlib is the closer one to the exact answer
    x = (1e4 + rng.standard_normal((16, 1024))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ry, rdx, _, _ = layer_norm_longdouble(x, None, None, 1e-5, dy)
    yt, dxt, _, _ = torch_layer_norm(x, None, None, dy)
    y, cache = layer_norm_forward(x)
    dx, _, _ = layer_norm_backward(dy, cache)
    assert max_rel_error(y, ry) <= max_rel_error(yt, ry)
    assert max_rel_error(dx, rdx) <= max_rel_error(dxt, rdx)
