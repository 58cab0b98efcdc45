r"""Five ways to compute a row's mean and (population) variance, and how they fail.

Each function takes ``x`` of shape (..., D), reduces over the last axis, works in ``dtype``
(float32 or float64: the input is converted once, exactly or rounded as that type must) and returns
``(mean, var)`` of shape (...,). The cancellation chapter runs them all at growing offsets.

=========== ============================================ ===========================================
function    formula                                      relative error of var, roughly
=========== ============================================ ===========================================
naive       E[x^2] - E[x]^2, one pass                    u * kappa^2 (kappa = |mean|/std); can be < 0
two_pass    mean first, then E[(x - mean)^2]             u + (u * kappa)^2
welford     running mean and M2, one pass, sequential    u * kappa * D (the running mean drifts)
shifted     E[(x-K)^2] - E[x-K]^2 with K = x[..., 0]     u * kappa_K^2, kappa_K = |mean-K|/std ~ 1
pairwise    Chan-Golub-LeVeque merge of halves           u * kappa * log2(D)
=========== ============================================ ===========================================

``u`` is the unit round-off of ``dtype``; the bounds are from Chan, Golub and LeVeque (1983).
"""

from __future__ import annotations

import numpy as np

__all__ = ["naive", "two_pass", "welford", "shifted", "pairwise", "METHODS"]


def _as(x, dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have shape (..., D) with D >= 1, got {x.shape}")
    return x.astype(dtype)  # a copy: the caller's array is never touched


def naive(x, dtype=np.float64):
    """Textbook one pass: ``var = E[x^2] - E[x]^2``. Loses everything once mean^2/var exceeds 1/u.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1e4 + 0.1, 1e4 - 0.1], dtype=np.float32)
    >>> float(naive(x, np.float32)[1]), float(naive(x, np.float64)[1])  # true variance 0.0099220...
    (0.0, 0.009922027587890625)
    """
    x = _as(x, dtype)
    D = x.shape[-1]
    mean = x.sum(axis=-1) / D
    return mean[()], ((x * x).sum(axis=-1) / D - mean * mean)[()]


def two_pass(x, dtype=np.float64):
    """Mean first, then the mean of squared deviations. Never negative.

    Examples
    --------
    >>> [float(v) for v in two_pass([1.0, 2.0, 3.0, 4.0])]
    [2.5, 1.25]
    """
    x = _as(x, dtype)
    D = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / D
    xc = x - mean
    return mean[..., 0][()], ((xc * xc).sum(axis=-1) / D)[()]


def welford(x, dtype=np.float64):
    r"""Welford's (1962) single pass, one element at a time (vectorised across rows).

    .. math:: \delta = x_k - m_{k-1},\quad m_k = m_{k-1} + \delta/k,\quad M_k = M_{k-1} + \delta(x_k - m_k)

    Stable against cancellation, but the running mean absorbs one rounding error per step, so in
    float32 with a large offset its error grows with D.

    Examples
    --------
    >>> [float(v) for v in welford([1.0, 2.0, 3.0, 4.0])]
    [2.5, 1.25]
    """
    x = _as(x, dtype)
    D = x.shape[-1]
    mean = np.zeros(x.shape[:-1], x.dtype)
    m2 = np.zeros(x.shape[:-1], x.dtype)
    for k in range(D):
        xk = x[..., k]
        delta = xk - mean
        mean = mean + delta / (k + 1)  # a Python int keeps the array's dtype (NEP 50)
        m2 = m2 + delta * (xk - mean)
    return mean[()], (m2 / D)[()]


def shifted(x, dtype=np.float64, shift=None):
    """One pass on shifted data: ``E[(x-K)^2] - E[x-K]^2`` with ``K`` an element of the row.

    Any ``K`` close to the mean removes the cancellation; the first element is within a few standard
    deviations of it for any sensible row, and ``x - K`` is exact when x and K are within a factor 2.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1e4 + 0.1, 1e4 - 0.1], dtype=np.float32)
    >>> float(naive(x, np.float32)[1]), round(float(shifted(x, np.float32)[1]), 9)
    (0.0, 0.009922028)
    """
    x = _as(x, dtype)
    D = x.shape[-1]
    K = x[..., :1] if shift is None else np.asarray(shift, x.dtype)[..., None]
    d = x - K
    s1 = d.sum(axis=-1) / D
    return (K[..., 0] + s1)[()], ((d * d).sum(axis=-1) / D - s1 * s1)[()]


def pairwise(x, dtype=np.float64):
    r"""Chan, Golub and LeVeque's pairwise merge: split the row in halves, recurse, combine.

    Two partial results (n_a, m_a, M_a) and (n_b, m_b, M_b) combine as

    .. math:: n = n_a + n_b,\quad \delta = m_b - m_a,\quad m = m_a + \delta\,n_b/n,\quad
              M = M_a + M_b + \delta^2 n_a n_b / n

    This is also how a GPU combines the partial statistics of its threads and warps.

    Examples
    --------
    >>> [float(v) for v in pairwise([1.0, 2.0, 3.0, 4.0, 5.0])]
    [3.0, 2.0]
    """
    x = _as(x, dtype)
    D = x.shape[-1]
    n = np.ones(D, x.dtype)  # count of each block
    mean = x  # ...,blocks
    m2 = np.zeros_like(x)
    while mean.shape[-1] > 1:
        B = mean.shape[-1]
        h = B // 2
        na, nb = n[: 2 * h : 2], n[1 : 2 * h : 2]
        ma, mb = mean[..., : 2 * h : 2], mean[..., 1 : 2 * h : 2]
        n_ab = na + nb
        delta = mb - ma
        new_mean = ma + delta * (nb / n_ab)
        new_m2 = m2[..., : 2 * h : 2] + m2[..., 1 : 2 * h : 2] + delta * delta * (na * nb / n_ab)
        if B % 2:  # an odd block is carried to the next level unchanged
            n_ab = np.concatenate([n_ab, n[-1:]])
            new_mean = np.concatenate([new_mean, mean[..., -1:]], axis=-1)
            new_m2 = np.concatenate([new_m2, m2[..., -1:]], axis=-1)
        n, mean, m2 = n_ab, new_mean, new_m2
    return mean[..., 0][()], (m2[..., 0] / D)[()]


#: name -> function, in the order the book presents them
METHODS = {"naive": naive, "two_pass": two_pass, "welford": welford, "shifted": shifted, "pairwise": pairwise}
