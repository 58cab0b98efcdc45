"""lnlib.torch: a drop-in torch.nn.LayerNorm with lnlib's forward and backward (CPU here, CUDA on a GPU)."""

import ast
import inspect
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lnlib.oracle import layer_norm_longdouble, max_rel_error  # noqa: E402
from lnlib.torch import LayerNorm, layer_norm  # noqa: E402

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
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12), (shape, nshape)
        if grads_ours is not None:
            grads_theirs = torch.autograd.grad(theirs, (x, w, b), dy)
            for a, t in zip(grads_ours, grads_theirs):
                assert torch.allclose(a, t, rtol=1e-10, atol=1e-12), (shape, nshape)


@pytest.mark.parametrize("nshape", [(7,), (3, 5)])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_gradcheck_float64(nshape, affine):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, 4, *nshape), generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(nshape, generator=g, dtype=torch.float64, requires_grad=True) if affine[0] else None
    b = torch.randn(nshape, generator=g, dtype=torch.float64, requires_grad=True) if affine[1] else None
    assert torch.autograd.gradcheck(lambda *a: layer_norm(a[0], nshape, *a[1:]), (x, w, b), eps=1e-6, atol=1e-8)


def test_float32_keeps_lnlibs_accuracy_far_from_zero():
    g = torch.Generator().manual_seed(2)
    x = (1e4 + torch.randn(64, 512, generator=g)).float()
    exact = layer_norm_longdouble(x.numpy())  # y only, without dy
    ours = max_rel_error(layer_norm(x, 512).numpy(), exact)
    theirs = max_rel_error(torch.nn.functional.layer_norm(x, (512,)).numpy(), exact)
    assert ours < 2e-6 and theirs > 10 * ours


def test_module_is_a_drop_in():
    theirs = torch.nn.LayerNorm((3, 4), eps=1e-6, bias=False)
    ours = LayerNorm((3, 4), eps=1e-6, bias=False)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight"}
    assert ours.bias is None and ours.weight.shape == theirs.weight.shape
    with torch.no_grad():
        theirs.weight.uniform_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 3, 4)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert repr(ours).endswith(repr(theirs).split("(", 1)[1])  # same extra_repr
    assert LayerNorm(4, elementwise_affine=False).weight is None
    assert set(LayerNorm(4).state_dict()) == {"weight", "bias"}


def test_a_small_model_trains_the_same():
    def run(norm_cls):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(16, 32), norm_cls(32), torch.nn.GELU(), torch.nn.Linear(32, 32), norm_cls(32),
            torch.nn.GELU(), torch.nn.Linear(32, 1),
        ).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        data = torch.Generator().manual_seed(3)
        X = torch.randn(256, 16, generator=data, dtype=torch.float64)
        Y = torch.sin(X[:, :1] * 2) + X[:, 1:2] ** 2
        losses = []
        for _ in range(100):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), Y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    ours, theirs = run(LayerNorm), run(torch.nn.LayerNorm)
    assert ours[-1] < 0.5 * ours[0]  # it learns
    # and follows PyTorch's curve step for step (round-off differences grow slowly in training)
    assert np.max(np.abs(ours - theirs) / theirs) < 1e-6


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
    tol = 1e-5 if dtype == "float32" else 2e-2
    for a, c in zip(*outs):
        assert max_rel_error(c.numpy(), a.numpy()) < tol * math.sqrt(64 * 3)
