r"""Five ways to compute a row's mean and (population) variance, and how large their errors are.

Each function takes ``x`` of shape (..., D), reduces over the last axis, works in ``dtype``
(float32 or float64: the input is converted once, exactly or rounded as that type must) and returns
``(mean, var)`` of shape (...,). The cancellation chapter runs them all at growing offsets.

Sums are NumPy's: blocked pairwise summation, whose longest chain of additions is
:func:`numpy_sum_depth` (21 for 1024 terms), not n - 1 as for a loop. With ``u`` the unit round-off
of ``dtype``, ``r = u/sqrt(8 ln 2) ~ 0.42 u`` the root-mean-square of one rounding error relative to
the value rounded, and ``kappa = sqrt(1 + mean^2/var)`` the condition number of the variance, the
typical (root-mean-square) relative error of the variance of rows of n values is
(:func:`typical_error`; derived in the chapter):

=========== ============================================ ==============================================
function    formula                                      typical relative error of var
=========== ============================================ ==============================================
naive       E[x^2] - E[x]^2, one pass                    sqrt(11) r kappa^2; can be < 0
two_pass    mean first, then E[(x - mean)^2]             sqrt(2) r (+) 2 sqrt(3) (r kappa)^2
welford     running mean and M2, one pass, sequential    r sqrt(n/3) (+) 0.82 r kappa (+) 1.34 n (r kappa)^2/6
shifted     E[(x-K)^2] - E[x-K]^2 with K = x[..., 0]     sqrt(40) r, whatever kappa
pairwise    Chan-Golub-LeVeque merge of halves           sqrt(2) r (+) 2 r kappa sqrt(log2(n)/n)
                                                         (+) log2(n) (r kappa)^2
=========== ============================================ ==============================================

``a (+) b`` is ``sqrt(a^2 + b^2)``: independent errors add in quadrature. The worst-case bounds of
Chan, Golub and LeVeque (1983) have the same shape with the summation's depth ``h`` for the constants:
``(3h + 2) u kappa^2`` for naive, ``(h + 3) u + (h u kappa)^2`` for two-pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["naive", "two_pass", "welford", "shifted", "pairwise", "METHODS", "numpy_sum_depth",
           "typical_error"]


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

    Stable against cancellation. Every update rounds the running mean at the magnitude of the mean,
    and later updates scale an error made at step j by j/k; the final mean is off by about
    ``r |mean| sqrt(D/3)`` and the variance by about ``0.82 r kappa`` (see :func:`typical_error`).
    ``M2`` is a sequential sum, so even on centred data its error grows like ``sqrt(D)``.

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


def numpy_sum_depth(n: int) -> int:
    """Longest chain of additions one term goes through in NumPy's sum of ``n`` contiguous values.

    NumPy sums a contiguous axis pairwise: blocks of at most 128 values are summed by eight running
    accumulators (one per eighth element), which are then added pairwise, and longer runs are halved
    (at a multiple of 8) until they fit a block. The worst-case error of the sum is about
    ``numpy_sum_depth(n) * u * sum(|x|)``; for a loop it is ``(n - 1) u sum(|x|)``.

    Examples
    --------
    >>> [numpy_sum_depth(n) for n in (4, 64, 128, 1024, 2**20)]
    [3, 10, 18, 21, 31]
    """
    if n < 8:
        return max(n - 1, 0)
    if n <= 128:
        return (n // 8 - 1) + 3 + n % 8  # accumulator, three pairwise levels, the tail
    half = n // 2 - (n // 2) % 8
    return 1 + max(numpy_sum_depth(half), numpy_sum_depth(n - half))


#: root-mean-square of one rounding error relative to the value rounded, in units of u
#: (error uniform over half a spacing either side; values spread evenly in log scale)
RMS_ROUNDING = 1 / np.sqrt(8 * np.log(2))


def typical_error(method, kappa, n, dtype=np.float64):
    r"""Root-mean-square relative error of the variance ``method`` computes, in the rounding model.

    The model: every rounding changes its result v by an independent error of root-mean-square
    ``r |v|`` with ``r = RMS_ROUNDING * u``, and independent errors add in quadrature. Sums are
    NumPy's pairwise sums, whose relative error is about ``sqrt(2) r`` (the last additions dominate:
    one at the full sum, two at half of it, ..., variances 1 + 1/2 + 1/4 + ... = 2).

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    kappa : float or ndarray
        Condition number ``sqrt(1 + mean^2/var)`` of the rows.
    n : int
        Row length.
    dtype : float32 or float64

    Examples
    --------
    >>> float(typical_error("naive", 1e3, 1024, np.float32)) > 1e-2 > float(
    ...     typical_error("two_pass", 1e3, 1024, np.float32))
    True
    """
    u = np.finfo(dtype).eps / 2
    r = RMS_ROUNDING * u
    kappa = np.asarray(kappa, dtype=float)
    e = r * kappa  # one rounding at the magnitude of the mean, in units of the standard deviation
    lg = np.log2(n)
    if method == "naive":  # sum of squares, twice the mean's error, rounding of mean^2
        out = np.sqrt(2 + 8 + 1) * r * kappa**2
    elif method == "two_pass":  # sum of squared deviations; the mean's error, squared
        out = np.sqrt(2 * r**2 + 12 * e**4)
    elif method == "welford":  # M2 summed in a loop; damped drift, first and second order
        # (the second-order bias sum_k e_k^2 has mean n e^2/6 and an RMS sqrt(1.8) times that)
        out = np.sqrt(r**2 * n / 3 + (2 / 3) * e**2 + 1.8 * (n * e**2 / 6) ** 2)
    elif method == "shifted":  # naive on x - K, kappa_K^2 = 1 + z^2, z ~ N(0, 1), averaged
        out = np.sqrt(2 * 6 + 9 * 3 + 1) * r + 0 * kappa
    elif method == "pairwise":  # merges: pairwise sum; delta's error, first and second order
        out = np.sqrt(2 * r**2 + 4 * e**2 * lg / n + (lg * e**2) ** 2)
    else:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return out[()]
