r"""High-precision LayerNorm the tests trust: long double for any size, mpmath for a few rows.

Both compute the exact math on the *same* input values the function under test received (the inputs
are converted exactly, never re-generated), so "error" means the function's own error.

The long-double version shifts each row by its first element before averaging, like
:mod:`lnlib.layernorm`, but it works in a wider type (64-bit significand on x86-64) without the
power-of-two scaling, so its round-off is about 2000 times smaller than float64's and it shares none of
the float64 code. :func:`layer_norm_mpmath` checks it with 50 significant digits.
"""

from __future__ import annotations

import mpmath
import numpy as np

__all__ = ["LONGDOUBLE_IS_WIDER", "layer_norm_longdouble", "layer_norm_mpmath", "max_rel_error", "correctly_rounded"]

#: False where ``np.longdouble`` is just float64 (Windows, some ARM builds): float64 tests then skip.
LONGDOUBLE_IS_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


def layer_norm_longdouble(x, gamma=None, beta=None, eps=1e-5, dy=None):
    """LayerNorm forward (and backward if ``dy`` is given) in long double.

    Parameters
    ----------
    x : ndarray, shape (..., D), any real float dtype
    gamma, beta : ndarray, shape (D,), optional
    eps : float
    dy : ndarray, shape (..., D), optional

    Returns
    -------
    y : ndarray of np.longdouble
        or ``(y, dx, dgamma, dbeta)`` when ``dy`` is given (dgamma/dbeta computed even without
        gamma/beta).

    Examples
    --------
    >>> import numpy as np
    >>> y = layer_norm_longdouble(np.array([1e10, 1e10 + 2.0]), eps=0.0)
    >>> [float(v) for v in y]
    [-1.0, 1.0]
    """
    L = np.longdouble
    xl = np.asarray(x).astype(L)  # ...,D  exact: every float16/32/64 value is a long double
    D = xl.shape[-1]
    d = xl - xl[..., :1]  # ...,D
    xc = d - d.sum(axis=-1, keepdims=True) / D  # ...,D
    var = (xc * xc).sum(axis=-1, keepdims=True) / D  # ...,1
    rstd = 1 / np.sqrt(var + L(eps))  # ...,1
    x_hat = xc * rstd  # ...,D
    gl = np.ones(D, L) if gamma is None else np.asarray(gamma).astype(L)
    bl = np.zeros(D, L) if beta is None else np.asarray(beta).astype(L)
    y = x_hat * gl + bl
    if dy is None:
        return y
    dyl = np.asarray(dy).astype(L)
    lead = tuple(range(xl.ndim - 1))
    g = dyl * gl
    dx = rstd * (g - g.sum(-1, keepdims=True) / D - x_hat * (g * x_hat).sum(-1, keepdims=True) / D)
    if D == 2:
        # For two columns, 1 and x_hat span everything and the formula above cancels to a remainder
        # eps/(var+eps) times its terms. Written out, dx = eps rstd^3 (g1 - g2)/2 (1, -1) for any
        # non-constant row, which has no cancellation; checked against mpmath in the tests.
        half = (g[..., :1] - g[..., 1:]) / 2
        exact = L(eps) * rstd**3 * np.concatenate([half, -half], axis=-1)
        dx = np.where(var > 0, exact, dx)
    return y, dx, (dyl * x_hat).sum(axis=lead), dyl.sum(axis=lead)


def layer_norm_mpmath(x_row, gamma=None, beta=None, eps=1e-5, dy_row=None, dps=50):
    """LayerNorm of one row with ``dps`` significant digits (mpmath), as lists of mpf.

    Returns ``y`` or ``(y, dx)`` when ``dy_row`` is given. Meant for D up to a few hundred.

    Examples
    --------
    >>> y = layer_norm_mpmath([1.0, 2.0, 3.0], eps=0.0)
    >>> [round(float(v), 6) for v in y]
    [-1.224745, 0.0, 1.224745]
    """
    with mpmath.workdps(dps):
        xs = [mpmath.mpf(float(v)) for v in x_row]
        D = len(xs)
        gs = [mpmath.mpf(1)] * D if gamma is None else [mpmath.mpf(float(v)) for v in gamma]
        bs = [mpmath.mpf(0)] * D if beta is None else [mpmath.mpf(float(v)) for v in beta]
        mu = mpmath.fsum(xs) / D
        var = mpmath.fsum((v - mu) ** 2 for v in xs) / D
        rstd = 1 / mpmath.sqrt(var + mpmath.mpf(float(eps)))
        x_hat = [(v - mu) * rstd for v in xs]
        y = [g * h + b for g, h, b in zip(gs, x_hat, bs)]
        if dy_row is None:
            return y
        g = [gm * mpmath.mpf(float(d)) for gm, d in zip(gs, dy_row)]
        g_mean = mpmath.fsum(g) / D
        gx_mean = mpmath.fsum(a * b for a, b in zip(g, x_hat)) / D
        return y, [rstd * (gj - g_mean - h * gx_mean) for gj, h in zip(g, x_hat)]


def max_rel_error(a, ref) -> float:
    """Max abs error over max abs value, ``max|a - ref| / max|ref|``, computed in long double.

    Zero when both are zero; infinite when only ``ref`` is zero.

    Examples
    --------
    >>> max_rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    0.2
    """
    a = np.asarray(a).astype(np.longdouble)
    ref = np.asarray(ref).astype(np.longdouble)
    num = np.max(np.abs(a - ref)) if a.size else 0.0
    den = np.max(np.abs(ref)) if ref.size else 0.0
    if num == 0:
        return 0.0
    return float(num / den) if den > 0 else float("inf")


def correctly_rounded(got, exact, dtype) -> bool:
    """True if every element of ``got`` is as close to ``exact`` as rounding ``exact`` to ``dtype`` allows.

    The slack is 1e-6 of the rounding error (ties and double rounding) plus the smallest subnormal.

    Examples
    --------
    >>> exact = np.array([1.0 / 3.0])
    >>> correctly_rounded(exact.astype(np.float16), exact, np.float16)
    True
    >>> correctly_rounded(np.array([0.3], np.float16), exact, np.float16)
    False
    """
    exact = np.asarray(exact).astype(np.longdouble)
    best = np.abs(exact.astype(dtype).astype(np.longdouble) - exact)
    err = np.abs(np.asarray(got).astype(np.longdouble) - exact)
    return bool(np.all(err <= best * (1 + 1e-6) + np.finfo(dtype).smallest_subnormal))
