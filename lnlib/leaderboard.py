"""An accuracy leaderboard: LayerNorm implementations on adversarial inputs, against long double.

Each case makes ``(x, gamma, beta, dy)`` from a fixed seed; each implementation returns ``(y, dx)``;
:func:`run` measures every pair. Used by the book's leaderboard chapter, which is regenerated on every
build, and by the tests.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from . import reference, typical
from .layernorm import layer_norm_backward, layer_norm_forward
from .oracle import layer_norm_longdouble

__all__ = ["CASES", "SHIFTED_FLOAT32", "implementations", "error", "run", "Result"]

EPS = 1e-5
#: the column that runs lnlib's shifted two-pass algorithm entirely in float32
SHIFTED_FLOAT32 = "shifted two-pass (float32)"


def _case(rows, D, dtype, offset=0.0, scale=1.0, constant=None, beta_scale=1.0):
    def make(rng):
        if constant is not None:
            x = np.full((rows, D), constant)
        else:
            x = offset + scale * rng.standard_normal((rows, D))
        x = x.astype(dtype)
        gamma = (1 + 0.5 * rng.standard_normal(D)).astype(dtype)
        beta = (beta_scale * rng.standard_normal(D)).astype(dtype)
        dy = rng.standard_normal((rows, D)).astype(dtype)
        return x, gamma, beta, dy

    return make


#: name -> (description, maker(rng) -> (x, gamma, beta, dy)); N(mu, sigma^2) names the rows' mean and
#: variance (not standard deviation)
CASES: dict[str, tuple[str, Callable]] = {
    "unit rows": ("float32, 64 x 1024, N(0, 1)", _case(64, 1024, np.float32)),
    "offset 1e2": ("float32, rows N(1e2, 1)", _case(64, 1024, np.float32, offset=1e2)),
    "offset 1e4": ("float32, rows N(1e4, 1)", _case(64, 1024, np.float32, offset=1e4)),
    "offset 1e6": ("float32, rows N(1e6, 1)", _case(64, 1024, np.float32, offset=1e6)),
    "constant rows": ("float32, 16 x 768, every element 1234.5678", _case(16, 768, np.float32, constant=1234.5678)),
    "D = 1": ("float32, 64 x 1, N(0, 1e4)", _case(64, 1, np.float32, scale=100.0)),
    "D = 2": ("float32, 64 x 2, N(0, 1e6)", _case(64, 2, np.float32, scale=1e3)),
    "huge 1e20": ("float32, rows N(0, 1e40): squares overflow float32", _case(16, 1024, np.float32, scale=1e20)),
    "tiny 1e-20": ("float32, rows N(0, 1e-40), beta = 0: squares underflow, eps dominates",
                   _case(16, 1024, np.float32, scale=1e-20, beta_scale=0.0)),
    "long rows": ("float32, 4 x 65536, N(1e4, 1)", _case(4, 65536, np.float32, offset=1e4)),
    "float16 offset 100": ("float16, rows N(100, 1)", _case(64, 1024, np.float16, offset=100.0)),
}


def _lnlib(x, gamma, beta, dy):
    y, cache = layer_norm_forward(x, gamma, beta, EPS)
    return y, layer_norm_backward(dy, cache)[0]


def _shifted_float32(x, gamma, beta, dy):
    # lnlib's shift and two passes, every operation in float32 (as a GPU kernel
    # computes); no power-of-two scaling and no closed form for D = 2. float16
    # inputs are widened to float32 and the results rounded once.
    f32, dtype = np.float32, x.dtype
    x, gamma, beta, dy = (a.astype(f32) for a in (x, gamma, beta, dy))
    D = f32(x.shape[-1])
    d = x - x[:, :1]  # the shift: the row's offset goes before any sum
    xc = d - d.sum(-1, keepdims=True) / D  # first pass: centred values
    var = (xc * xc).sum(-1, keepdims=True) / D  # second pass
    rstd = f32(1) / np.sqrt(var + f32(EPS))
    x_hat = xc * rstd
    g = dy * gamma
    g_mean = g.sum(-1, keepdims=True) / D
    gx_mean = (g * x_hat).sum(-1, keepdims=True) / D
    dx = rstd * (g - g_mean - x_hat * gx_mean)
    return (x_hat * gamma + beta).astype(dtype), dx.astype(dtype)


def _plain(x, gamma, beta, dy):
    y, cache = reference.forward(x, gamma, beta, EPS)
    return y, reference.backward(dy, cache)[0].astype(x.dtype)


def _typical(x, gamma, beta, dy):
    # the typical online version with its own default eps = 1e-8, on a (1, M, D) batch as it requires
    y, cache = typical.forward(x[None], gamma, beta)
    return y[0], typical.backward(dy[None], cache)[0][0]


def _one_pass(x, gamma, beta, dy):
    # the E[x^2] - E[x]^2 fast path, in the input dtype, as in the library bugs the book cites
    D = x.shape[-1]
    mean = x.sum(-1, keepdims=True) / D
    var = (x * x).sum(-1, keepdims=True) / D - mean * mean
    rstd = 1 / np.sqrt(var + x.dtype.type(EPS))
    x_hat = (x - mean) * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) - x_hat * (g * x_hat).mean(-1, keepdims=True))
    return x_hat * gamma + beta, dx


def _torch(x, gamma, beta, dy):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.layer_norm(xt, (x.shape[-1],), torch.tensor(gamma), torch.tensor(beta), EPS)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy()


def implementations() -> dict[str, Callable]:
    """name -> fn(x, gamma, beta, dy) -> (y, dx); PyTorch only where it imports."""
    impls = {
        "lnlib": _lnlib,
        SHIFTED_FLOAT32: _shifted_float32,
        "textbook two-pass (input dtype)": _plain,
        "typical online (eps 1e-8)": _typical,
        "one-pass E[x²]-E[x]²": _one_pass,
    }
    try:
        import torch
    except ImportError:
        return impls
    impls[f"PyTorch {torch.__version__.split('+')[0]} CPU"] = _torch
    return impls


def error(got, exact) -> float:
    """max |got - exact| / max |exact|; absolute where exact is all zero; inf where got is not finite."""
    got = np.asarray(got).astype(np.longdouble)
    exact = np.asarray(exact).astype(np.longdouble)
    if not np.all(np.isfinite(got)):
        return float("inf")
    scale = np.max(np.abs(exact))
    diff = np.max(np.abs(got - exact))
    return float(diff / scale) if scale > 0 else float(diff)


class Result(NamedTuple):
    case: str
    impl: str
    y: float
    dx: float


def run(seed: int = 0, cases=None, impls=None) -> list[Result]:
    """Measure every implementation on every case (same inputs for all); errors against long double.

    The reference for the typical online version is computed with its own eps (1e-8), so its score measures its
    arithmetic, not its choice of eps.
    """
    cases = CASES if cases is None else {k: CASES[k] for k in cases}
    impls = implementations() if impls is None else impls
    out = []
    for c, (_, make) in cases.items():
        x, gamma, beta, dy = make(np.random.default_rng(seed))
        exact = {e: layer_norm_longdouble(x, gamma, beta, e, dy) for e in (EPS, typical.DEFAULT_EPS)}
        for name, fn in impls.items():
            ry, rdx, _, _ = exact[typical.DEFAULT_EPS if fn is _typical else EPS]
            try:
                with np.errstate(all="ignore"):
                    y, dx = fn(x.copy(), gamma.copy(), beta.copy(), dy.copy())
                out.append(Result(c, name, error(y, ry), error(dx, rdx)))
            except (RuntimeError, TypeError) as exc:  # e.g. a dtype a library does not support
                out.append(Result(c, name, float("nan"), float("nan")))
                del exc
    return out
