"""lnlib.torch: a drop-in torch.nn.LayerNorm with lnlib's forward and backward (CPU here, CUDA on a GPU)."""

import ast
import inspect
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lnlib.oracle import layer_norm_longdouble, max_rel_error  # noqa: E402
from lnlib.torch import LayerNorm, layer_norm  # noqa: E402
from lnlib.cuda.limits import TOL  # noqa: E402  (the GPU bounds; a pure-Python module)

from .helpers import CONTRACT, U32  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _pytorch_sample_cases():
    """The (input shape, normalized_shape, kwargs) cases of PyTorch's own OpInfo for layer_norm.

    Read from the installed PyTorch's source (its test module needs packages we do not install).
    """
    import torch.testing._internal as internal

    path = inspect.getfile(internal).replace("__init__.py", "common_methods_invocations.py")
    from pathlib import Path

    tree = ast.parse(Path(path).read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "sample_inputs_layer_norm")
    cases = next(n for n in ast.walk(fn) if isinstance(n, ast.AnnAssign) and n.target.id == "cases")
    return ast.literal_eval(cases.value)


def test_pytorch_sample_inputs_agree_with_torch():
    cases = _pytorch_sample_cases()
    assert len(cases) >= 5
    g = torch.Generator().manual_seed(0)
    for shape, nshape, kwargs in cases:
        eps = kwargs.get("eps", 1e-5)
        x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(nshape, generator=g, dtype=torch.float64, requires_grad=True)
        b = torch.randn(nshape, generator=g, dtype=torch.float64, requires_grad=True)
        if eps <= 0:  # PyTorch accepts a negative eps; lnlib refuses it by contract
            with pytest.raises(ValueError, match="^eps"):
                layer_norm(x, nshape, w, b, eps=eps)
            continue
        ours = layer_norm(x, nshape, w, b, eps=eps)
        dy = torch.randn(ours.shape, generator=g, dtype=torch.float64)
        grads_ours = torch.autograd.grad(ours, (x, w, b), dy) if ours.numel() else None
        theirs = torch.nn.functional.layer_norm(x, nshape, w, b, eps=eps)
        # two float64 evaluations: agree64 (tests/helpers.py) for rows of prod(nshape) <= 25 elements
        # is 5.6e-14 relative to the largest value; elementwise, 1e-12 leaves 18x on top of it, and a
        # value far below the largest one is covered by atol (|y| and the gradients are O(1) here)
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12), (shape, nshape)
        if grads_ours is not None:
            grads_theirs = torch.autograd.grad(theirs, (x, w, b), dy)
            for a, t in zip(grads_ours, grads_theirs):
                # gradients: also sums over the rows (dgamma, dbeta); elementwise, an element that
                # cancels to far below its terms gets its error relative to the terms, hence rtol
                # 100x the forward's; measured at most 0.03 of it over the variation matrix
                assert torch.allclose(a, t, rtol=1e-10, atol=1e-12), (shape, nshape)


@pytest.mark.parametrize("nshape", [(7,), (3, 5)])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_gradcheck_float64(nshape, affine):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, 4, *nshape), generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(nshape, generator=g, dtype=torch.float64, requires_grad=True) if affine[0] else None
    b = torch.randn(nshape, generator=g, dtype=torch.float64, requires_grad=True) if affine[1] else None
    # central differences with step h = 1e-6 in float64: truncation h^2 |third derivative| / 6 ~ 1e-12
    # and round-off u64 |f| / h ~ 1e-10, both far below atol
    assert torch.autograd.gradcheck(lambda *a: layer_norm(a[0], nshape, *a[1:]), (x, w, b), eps=1e-6, atol=1e-8)


def test_float32_keeps_lnlibs_accuracy_far_from_zero():
    g = torch.Generator().manual_seed(2)
    x = (1e4 + torch.randn(64, 512, generator=g)).float()
    exact = layer_norm_longdouble(x.numpy())  # y only, without dy
    ours = max_rel_error(layer_norm(x, 512).numpy(), exact)
    theirs = max_rel_error(torch.nn.functional.layer_norm(x, (512,)).numpy(), exact)
    # lnlib: its contract (tests/helpers.py). PyTorch: float32 statistics at offset 1e4 lose about
    # log10(1e4^2) digits of the variance (chapter 6), errors of 1e-4 and more: far above 10x lnlib's
    assert ours < CONTRACT[np.float32][0] and theirs > 10 * ours


def test_module_is_a_drop_in():
    theirs = torch.nn.LayerNorm((3, 4), eps=1e-6, bias=False)
    ours = LayerNorm((3, 4), eps=1e-6, bias=False)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight"}
    assert ours.bias is None and ours.weight.shape == theirs.weight.shape
    with torch.no_grad():
        theirs.weight.uniform_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 3, 4)
    # float32, D = 12: PyTorch's float32 sums are within (D + 4) u32 of |y| <= sqrt(D - 1) (weight
    # in [0, 1)), lnlib rounds once; the sum of the two bounds
    D = 12
    assert torch.allclose(ours(x), theirs(x), rtol=0, atol=(D + 5) * U32 * math.sqrt(D - 1))
    assert repr(ours).endswith(repr(theirs).split("(", 1)[1])  # same extra_repr
    assert LayerNorm(4, elementwise_affine=False).weight is None
    assert set(LayerNorm(4).state_dict()) == {"weight", "bias"}


def _small_model(norm_cls):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32), norm_cls(32), torch.nn.GELU(), torch.nn.Linear(32, 32), norm_cls(32),
        torch.nn.GELU(), torch.nn.Linear(32, 1),
    ).double()


def _gradients(model, X, Y):
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(X), Y)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def _sum_of_sample_magnitudes(model, X, Y):
    """For every parameter element, sum_n |t_n| over the samples' terms t_n of its gradient.

    Each layer's gradient is a sum over samples of products of what flowed in (its input a_n or
    x_hat_n) and what flowed back (g_n = dL_n/d output): W gets g_n a_n^T, a bias g_n, a LayerNorm's
    weight g_n * x_hat_n. So the sum of magnitudes is the same product taken of absolute values.
    """
    seen = {}

    def record(layer, inputs, output):
        seen[layer, "a"] = inputs[0].detach()
        output.register_hook(lambda g: seen.__setitem__((layer, "g"), g))

    hooks = [layer.register_forward_hook(record) for layer in model
             if isinstance(layer, (torch.nn.Linear, torch.nn.LayerNorm))]
    _gradients(model, X, Y)
    for h in hooks:
        h.remove()
    out = []
    for layer in model:
        if (layer, "a") not in seen:
            continue
        a, g = seen[layer, "a"], seen[layer, "g"].abs()
        if isinstance(layer, torch.nn.Linear):
            out += [g.T @ a.abs(), g.sum(0)]
        else:
            x_hat = torch.nn.functional.layer_norm(a, layer.normalized_shape, eps=layer.eps)
            out += [(g * x_hat.abs()).sum(0), g.sum(0)]
    return out


def test_a_small_model_trains_the_same():
    """Each step's gradients agree with torch.nn.LayerNorm's to round-off, and so do the loss curves.

    Comparing two independent 100-step trajectories directly would measure chaos, not LayerNorm:
    SGD amplifies a difference in the last bit by orders of magnitude over 100 steps, by an amount
    that differs from machine to machine. So the test checks two things that do not depend on it.

    1. At the *same parameters*, step after step along PyTorch's trajectory, every gradient element
       differs by at most ``K u sum_n |t_n|``, where ``t_n`` is sample n's term of that element (the
       gradient is the sum of them over the batch), u = 2^-53, and K = 2 L D + N bounds the first-order
       error of two float64 evaluations, each a chain of L = 7 layers of dot products of length at most
       D = 32, followed by a sum over N = 256 samples (the standard bound gamma_n = n u / (1 - n u) of a
       sum of n products, applied along the chain).
    2. The trajectory: lnlib's own 100 steps follow PyTorch's loss curve within a budget computed in
       the same run: 10 times the largest deviation of PyTorch's curve when every gradient element of
       every step is moved by the bound of (1), in a random direction.
    """
    data = torch.Generator().manual_seed(3)
    X = torch.randn(256, 16, generator=data, dtype=torch.float64)
    Y = torch.sin(X[:, :1] * 2) + X[:, 1:2] ** 2
    N, L, D, u = X.shape[0], 7, 32, 2.0**-53
    K = 2 * L * D + N

    theirs, ours = _small_model(torch.nn.LayerNorm), _small_model(LayerNorm)

    opt = torch.optim.SGD(theirs.parameters(), lr=0.05)
    reference, bounds, worst = [], [], 0.0
    for _ in range(100):
        ours.load_state_dict(theirs.state_dict())
        loss_ours, g_ours = _gradients(ours, X, Y)
        loss_theirs, g_theirs = _gradients(theirs, X, Y)
        bound = [K * u * m for m in _sum_of_sample_magnitudes(theirs, X, Y)]
        for a, b, c in zip(g_ours, g_theirs, bound):
            worst = max(worst, float(((a - b).abs() / c).max()))
        reference.append(loss_theirs)
        bounds.append(bound)
        opt.step()
    assert worst <= 1.0, f"a gradient differs by {worst:.2f} times its round-off bound"

    def trajectory(model, noise=None):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        losses = []
        for bound in bounds:
            losses.append(_gradients(model, X, Y)[0])
            if noise is not None:  # move each gradient element by its bound, in a random direction
                for p, c in zip(model.parameters(), bound):
                    p.grad += c * (2 * torch.randint(0, 2, c.shape, generator=noise) - 1)
            opt.step()
        return np.array(losses)

    reference = np.array(reference)
    perturbed = trajectory(_small_model(torch.nn.LayerNorm), torch.Generator().manual_seed(5))
    budget = 10 * np.max(np.abs(perturbed - reference) / reference)
    ours_curve = trajectory(_small_model(LayerNorm))
    assert ours_curve[-1] < 0.5 * ours_curve[0]  # it learns
    assert np.max(np.abs(ours_curve - reference) / reference) <= budget


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: layer_norm(np.ones((2, 4)), 4), TypeError, "^input"),
        (lambda: layer_norm(torch.ones(2, 4, dtype=torch.int32), 4), TypeError, "^input"),
        (lambda: layer_norm(torch.ones(2, 4), 5), ValueError, "^input's trailing"),
        (lambda: layer_norm(torch.ones(2, 4), 4, torch.ones(5)), ValueError, "^weight"),
        (lambda: layer_norm(torch.ones(2, 4), 4, torch.ones(4, dtype=torch.float64)), TypeError, "^weight"),
        (lambda: layer_norm(torch.ones(2, 4), 4, None, [0.0] * 4), TypeError, "^bias"),
        (lambda: layer_norm(torch.ones(2, 4), 4, eps=0.0), ValueError, "^eps"),
        (lambda: layer_norm(torch.ones(2, 4), "4"), TypeError, "^normalized_shape"),
        (lambda: LayerNorm(()), ValueError, "^normalized_shape"),
    ],
)
def test_bad_input_is_named(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_bfloat16_on_the_cpu_is_the_float32_result_rounded_once():
    x = torch.randn(8, 64).bfloat16()
    got = layer_norm(x, 64)
    want = layer_norm(x.float(), 64).bfloat16()
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)


@cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_agrees_with_the_cpu(dtype):
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 3, 256, generator=g).to(dt)
    w, b, dy = torch.randn(256, generator=g).to(dt), torch.randn(256, generator=g).to(dt), torch.randn(64, 3, 256, generator=g).to(dt)
    outs = []
    for device in ("cpu", "cuda"):
        xs, ws, bs = (t.to(device).requires_grad_() for t in (x, w, b))
        y = layer_norm(xs, 256, ws, bs)
        y.backward(dy.to(device))
        outs.append([t.float().cpu() for t in (y, xs.grad, ws.grad, bs.grad)])
    # the GPU's documented gradient bound (lnlib.cuda.limits.TOL: 2e-5 float32, 2^-6 bfloat16) for the
    # difference of two results each within it, grown by sqrt(rows) for dgamma and dbeta, sums over
    # 64 * 3 rows whose rounding errors add like a random walk
    tol = 2 * TOL[dtype][1]
    for a, c in zip(*outs):
        assert max_rel_error(c.numpy(), a.numpy()) < tol * math.sqrt(64 * 3)
