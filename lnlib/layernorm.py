r"""LayerNorm forward and backward on the CPU, accurate to the last digit the output type can hold.

This is the implementation readers call (``lnlib.layer_norm_forward``). Its lines are checked against
the step-by-step teaching version in :mod:`lnlib.reference` and against the long-double oracle in
:mod:`lnlib.oracle`; the book explains every step, and the chapter "Making NumPy fast" explains how
it runs: rows in cache-sized blocks on every core (:mod:`lnlib.blocked`), few passes per block, and
a cache of ``x`` plus two numbers a row, from which the backward recomputes x_hat exactly.

Notation (the book's equations):

.. math::

    \mu = \frac1D \sum_j x_j, \qquad
    \sigma^2 = \frac1D \sum_j (x_j - \mu)^2, \qquad
    \mathrm{rstd} = \frac{1}{\sqrt{\sigma^2 + \varepsilon}}, \qquad
    \hat x_j = (x_j - \mu)\,\mathrm{rstd}, \qquad
    y_j = \gamma_j \hat x_j + \beta_j

.. math::

    g_j = \gamma_j\,dy_j, \qquad
    dx_j = \mathrm{rstd}\,\Bigl(g_j - \tfrac1D\sum_k g_k - \hat x_j\,\tfrac1D\sum_k g_k \hat x_k\Bigr), \qquad
    d\gamma_j = \sum_{\text{rows}} dy_j\,\hat x_j, \qquad
    d\beta_j = \sum_{\text{rows}} dy_j
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from . import blocked
from ._validate import check_dy, check_eps, check_param, check_x

__all__ = ["LayerNormCache", "layer_norm_forward", "layer_norm_backward"]

#: A float64 row whose largest magnitude is 2**k with |k| above this is normalised with the
#: power-of-two scaling of :func:`_row_statistics` (below it, no square or sum can overflow, and no
#: square of a deviation the row can hold underflows). float16 and float32 rows never need it.
WIDE_EXPONENT = 400
#: Longest vector handed to one BLAS dot product: OpenBLAS runs a longer ddot on several threads of
#: its own, which would fight the blocks' threads for the cores.
DOT_MAX = 8192
#: Rows shorter than this get their per-row numbers (first element, mean, rstd, ...) written out in
#: full, one per element, before an operation, instead of broadcast as ``v[:, None]``. A broadcast
#: over rows calls NumPy's inner loop once a row, some tens of nanoseconds a call: at D = 64 that
#: is most of the pass. The values are the same, so are the results, bit for bit.
REPEAT_BELOW = 128
#: gamma and beta of rows shorter than this are tiled to about this many elements, and a block of n
#: rows is treated as n/k rows of k*D, so that the inner loop runs over k*D elements, not D.
#: Measured for 2**18 float64 elements: 0.17 against 0.05 ms at D = 64, 0.08 against 0.06 at D = 256.
TILE_WIDTH = 2048


class LayerNormCache(NamedTuple):
    """What :func:`layer_norm_backward` needs, and nothing else: x and two numbers per row.

    Attributes
    ----------
    x : ndarray, shape (..., D), the input's dtype
        A private, C-contiguous copy of the input (native byte order). The backward recomputes
        x_hat from it with the very operations the forward used, so it gets the forward's x_hat bit
        for bit; nothing the caller later does to ``x`` or ``y`` changes the backward.
    shifted_mean : ndarray, shape (...,), float64
        The mean of ``x - x[..., :1]``, each row less its own first element (not the row's mean).
        That difference is exact for nearby floats (Sterbenz), so recomputing
        ``(x - x[..., :1]) - shifted_mean`` keeps every digit even when the row sits far from zero, where
        ``x - mu`` in float64 would not (chapter 4 measures both).
    rstd : ndarray, shape (...,), float64
        ``1 / sqrt(var + eps)`` per row.
    gamma : ndarray of shape (D,), float64, or None
        A private copy of the scale (an optimiser updating ``gamma`` in place cannot change it).
    eps : float
        The forward's eps; only D = 2 needs it (see ``_dx_two_columns``).
    has_beta : bool
        Whether the forward had a shift, so that ``dbeta`` is returned (else ``None``).

    Notes
    -----
    Size in bytes: the input's own bytes plus 16 per row (mean and rstd), plus ``8*D`` for gamma:
    see :attr:`nbytes`. For rows of float64 whose magnitude is beyond 2**400 or below 2**-400,
    x_hat is recomputed through the power-of-two scaling of the forward; for those rows
    ``shifted_mean`` is informative only. A typical implementation found online (:mod:`lnlib.typical`) keeps twelve
    entries (x, x - mean, x_hat, mean, var, std, gamma, beta, ...): three D-sized arrays per row
    where this keeps one, in the input's own precision.
    """

    x: np.ndarray
    shifted_mean: np.ndarray
    rstd: np.ndarray
    gamma: np.ndarray | None
    eps: float
    has_beta: bool

    @property
    def dtype(self) -> np.dtype:
        """The input's dtype, which ``y``, ``dx``, ``dgamma`` and ``dbeta`` take."""
        return self.x.dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache's arrays."""
        return self.x.nbytes + self.shifted_mean.nbytes + self.rstd.nbytes + (0 if self.gamma is None else self.gamma.nbytes)

    @property
    def x_hat(self) -> np.ndarray:
        """The normalised input, float64, shape (..., D): recomputed from x, mean and rstd (a new array)."""
        D = self.x.shape[-1]
        out = np.empty(self.x.shape, dtype=np.float64).reshape(-1, D)
        x, mean, rstd = self.x.reshape(-1, D), self.shifted_mean.reshape(-1), self.rstd.reshape(-1)

        def work(r0, r1):
            with np.errstate(all="ignore"):
                for a, b in _blocks(r0, r1, D):
                    np.copyto(out[a:b], x[a:b])
                    _x_hat_inplace(out[a:b], x[a:b], mean[a:b], rstd[a:b], self.eps)

        blocked.run_chunks(work, x.shape[0], D)
        return out.reshape(self.x.shape)


_local = threading.local()


def _scratch(n: int, D: int) -> np.ndarray:
    """An (n, D) float64 array private to the calling thread and reused by every call on it.

    A new array per operation would cost its page faults each time, and two threads faulting at once
    slow each other down (``np.repeat`` of a 2 MiB block measured 2.6 times slower on two threads).
    """
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n * D:
        buf = _local.buf = np.empty(n * D)
    return buf[: n * D].reshape(n, D)


def _per_row(op, d: np.ndarray, v: np.ndarray) -> None:
    """``d = op(d, v[:, None])`` in place: one number of ``v`` per row of ``d``."""
    n, D = d.shape
    if D < REPEAT_BELOW:
        full = _scratch(n, D)
        np.copyto(full, v[:, None])  # one loop over the block, which NumPy does fast
        op(d, full, out=d)
    else:
        op(d, v[:, None], out=d)


class _PerColumn:
    """gamma or beta (float64, shape (D,)), ready for ``d = op(d, v)`` on C-contiguous blocks."""

    def __init__(self, v: np.ndarray):
        self.v = v
        self.k = max(1, TILE_WIDTH // len(v))  # rows put side by side
        self.tiled = np.tile(v, self.k) if self.k > 1 else v

    def apply(self, op, d: np.ndarray) -> None:
        n, D = d.shape
        m = n - n % self.k
        if self.k > 1 and m:
            wide = d[:m].view()
            wide.shape = (m // self.k, self.k * D)  # raises rather than copy: d must be C-contiguous
            op(wide, self.tiled, out=wide)
            d = d[m:]
        op(d, self.v, out=d)


def _column_sum(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Sums over the rows of a C-contiguous (n, D) block of ``a`` (or of ``a * b``), shape (D,).

    Short rows are summed as rows of about :data:`TILE_WIDTH` elements, k rows side by side, and the
    k partial sums then added: the same loop-call saving as :class:`_PerColumn`. The order of the
    additions depends on the shape alone, so results still do not depend on the number of threads.
    """
    n, D = a.shape
    k = max(1, TILE_WIDTH // D)
    m = n - n % k if k > 1 else 0
    total = np.zeros(D)
    if m:
        wa = a[:m].reshape(m // k, k * D)
        part = np.add.reduce(wa, axis=0) if b is None else np.einsum("ij,ij->j", wa, b[:m].reshape(m // k, k * D))
        total += np.add.reduce(part.reshape(k, D), axis=0)
    if m < n:
        total += np.add.reduce(a[m:], axis=0) if b is None else np.einsum("ij,ij->j", a[m:], b[m:])
    return total


def _blocks(r0: int, r1: int, D: int):
    B = blocked.rows_per_block(D)
    return ((a, min(r1, a + B)) for a in range(r0, r1, B))


def _row_sum(a: np.ndarray) -> np.ndarray:
    """Per-row sums of an (n, D) float64 array, in one pass (einsum's loop; not pairwise).

    Its error, at most about D u |row|, is far below what a float32 or float16 result can show
    (u = 2**-53); float64 results use NumPy's pairwise ``add.reduce`` instead. On short rows it
    measured 2.6 times faster than ``add.reduce(axis=1)`` (0.12 against 0.32 ns an element, D = 256).
    """
    return np.einsum("ij->i", a)


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row dot products of two (n, D) float64 arrays, in pieces a BLAS ddot does on one thread."""
    D = a.shape[1]
    if D <= DOT_MAX:
        return np.vecdot(a, b)
    k = next((k for k in range(2, D // 2 + 1) if D % k == 0 and D // k <= DOT_MAX), 0)
    if k:
        return np.vecdot(a.reshape(-1, D // k), b.reshape(-1, D // k)).reshape(-1, k).sum(axis=1)
    return np.einsum("ij,ij->i", a, b)


def _wide_rows(x64: np.ndarray) -> np.ndarray | None:
    """Rows of a float64 block that need power-of-two scaling (see :data:`WIDE_EXPONENT`), or None."""
    k = _exponents(x64, axis=1)[:, 0]
    wide = np.abs(k) > WIDE_EXPONENT
    return wide if wide.any() else None


def _x_hat_inplace(d: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray, eps: float) -> None:
    """Turn ``d`` (a float64 copy of the block ``x``) into x_hat, with the forward's operations."""
    wide = _wide_rows(d) if x.dtype == np.float64 else None
    _per_row(np.subtract, d, d[:, 0].copy())  # exact for nearby floats (Sterbenz)
    _per_row(np.subtract, d, mean)
    _per_row(np.multiply, d, rstd)
    if wide is not None:
        d[wide] = _row_statistics(np.array(x[wide], dtype=np.float64), eps)[0]


def _exponents(a: np.ndarray, axis=None) -> np.ndarray:
    """k with max|a| = m 2**k, 0.5 <= m < 1, over ``axis`` (kept as a length-1 axis): multiplying by
    2**-k is exact and brings the largest magnitude into [0.5, 1). frexp gives k = 0 where the
    maximum is 0, inf or nan; an empty ``a`` reduced over every axis gives 0 too."""
    if axis is None and a.size == 0:
        return np.zeros((), dtype=np.intc)
    return np.frexp(np.max(np.abs(a), axis=axis, keepdims=axis is not None))[1]


def _row_statistics(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_hat, rstd, mean) for a C-contiguous float64 array of shape (M, D), at any magnitude.

    ``mean`` is the shifted mean, of ``x - x[:, :1]``, as :class:`LayerNormCache` keeps it. This is
    the careful route the fast path of :func:`layer_norm_forward` takes for float64 rows beyond
    2**+-400 (:data:`WIDE_EXPONENT`), where a square could overflow or a deviation's square underflow.

    Three exact or error-free steps make the result independent of where and how big the row is:

    1. Scale each row by a power of two, 2**-k, so its largest magnitude lies in [0.5, 1): multiplying
       by a power of two is exact, and afterwards no square can overflow or underflow.
    2. Shift the scaled row by its first element before averaging: the difference of two nearby floats
       is exact (Sterbenz's lemma), so the mean of the shifted values carries no cancellation even
       when the row's mean is 1e10 standard deviations away from zero.
    3. Two passes: the centred values are formed first and then squared, never E[x^2] - E[x]^2.
    """
    k = _exponents(x, axis=1)  # M,1 ints
    x_s = np.ldexp(x, -k)  # M,D  |x_s| < 1
    d = x_s - x_s[:, :1]  # M,D  shifted by an element of the row
    mean_s = d.mean(axis=1, keepdims=True)  # M,1
    xc_s = d - mean_s  # M,D  centred, in scaled units
    var_s = np.mean(xc_s * xc_s, axis=1, keepdims=True)  # M,1  var / 4**k
    eps_s = np.ldexp(eps, -2 * k)  # M,1  eps / 4**k; inf only where var is far below eps
    # rstd * 2**k. Where eps_s overflowed, var is negligible beside eps; where var_s == 0 the row is
    # constant and xc_s is exactly zero, so any finite factor gives x_hat == 0.
    negligible = np.isinf(eps_s) | (var_s == 0)
    factor = np.where(negligible, 0.0, 1.0 / np.sqrt(var_s + eps_s))
    x_hat = np.where(np.isinf(eps_s), xc_s * np.ldexp(1.0 / np.sqrt(eps), k), xc_s * factor)
    rstd = np.where(negligible, 1.0 / np.sqrt(eps), np.ldexp(factor, -k))
    return x_hat, rstd[:, 0], np.ldexp(mean_s, k)[:, 0]


def _sum_rows(a: np.ndarray) -> np.ndarray:
    """Sum a (M, D) array over its rows pairwise: error grows as log2(M), not M, and the order is fixed."""
    while a.shape[0] > 1:
        half = a.shape[0] // 2
        head = a[:half] + a[half : 2 * half]
        a = np.concatenate([head, a[2 * half :]]) if a.shape[0] % 2 else head
    return a[0] if a.shape[0] else np.zeros(a.shape[1])


def _dx_two_columns(g, x_hat, rstd, eps, dx):
    """dx for D = 2 without the cancellation of the general formula.

    With two columns, the directions 1 and x_hat span the whole space, so the projection in the
    general formula removes everything but a remainder of relative size eps * rstd**2 = eps/(var+eps):
    computing it as a difference of terms that are 1/(eps rstd**2) times larger would leave only
    u/(eps rstd**2) relative accuracy (1e-4 for a float64 row of spread 1e3). Written out,
    dx = rstd * (eps rstd**2) * x_hat (x_hat . g) / (x_hat . x_hat), a product with no cancellation.
    A constant row (x_hat == 0) keeps the general result rstd (g - mean g). The product does not
    change when x_hat is scaled, so each row of x_hat is first brought to [0.5, 1) by a power of two
    (exact): where the variance is far below eps, x_hat can be as small as 1e-160, and x_hat . x_hat
    would be subnormal and carry only a few bits.
    """
    x_hat = np.ldexp(x_hat, -_exponents(x_hat, axis=1))  # M,D  exact; no square underflows
    xx = (x_hat * x_hat).sum(axis=1, keepdims=True)  # M,1
    xg = (x_hat * g).sum(axis=1, keepdims=True)  # M,1
    remainder = (eps * rstd) * rstd  # M,1  eps/(var+eps) <= 1, formed without overflowing
    return np.where(xx > 0, rstd * remainder * x_hat * (xg / np.where(xx > 0, xx, 1.0)), dx)


def _forward_block(d, x, gamma, beta, eps, pairwise):
    """One block of rows, in place: ``d`` holds ``x`` in float64 on entry and y on exit.

    Every line is one pass over a block that stays in cache. Returns the block's (mean, rstd), the
    mean being that of the row less its first element, as the cache keeps it.
    """
    D = d.shape[1]
    wide = _wide_rows(d) if pairwise else None  # float64 only
    _per_row(np.subtract, d, d[:, 0].copy())  # shift by the row's first element: exact (Sterbenz)
    mean = np.add.reduce(d, axis=1) if pairwise else _row_sum(d)  # n
    mean /= D
    _per_row(np.subtract, d, mean)  # centred: two passes, never E[x^2] - E[x]^2
    var = np.add.reduce(d * d, axis=1) if pairwise else _row_dot(d, d)  # n
    var /= D
    rstd = 1.0 / np.sqrt(var + eps)  # n
    _per_row(np.multiply, d, rstd)  # x_hat
    if wide is not None:  # float64 rows beyond 2**+-400: the scaled route
        d[wide], rstd[wide], mean[wide] = _row_statistics(np.array(x[wide], dtype=np.float64), eps)
    if gamma is not None:
        gamma.apply(np.multiply, d)
    if beta is not None:
        beta.apply(np.add, d)
    return mean, rstd


def _backward_block(x_hat, g, rstd, gamma, dgamma, dbeta):
    """One block of rows, in place: ``g`` holds dy in float64 on entry and dx on exit.

    ``x_hat`` (float64, recomputed) is overwritten; ``dgamma`` and ``dbeta`` (or None) gain the
    block's sums over its rows. Every line is one pass over a block that stays in cache.
    """
    D = g.shape[1]
    if dbeta is not None:
        dbeta += _column_sum(g)  # D
    if dgamma is not None:
        dgamma += _column_sum(g, x_hat)  # D, with no (n, D) temporary
        gamma.apply(np.multiply, g)  # g = gamma * dy
    g_mean = _row_sum(g)  # n
    g_mean /= D
    gx_mean = _row_dot(g, x_hat)  # n
    gx_mean /= D
    _per_row(np.subtract, g, g_mean)  # remove the component along the all-ones direction
    _per_row(np.multiply, x_hat, gx_mean)
    np.subtract(g, x_hat, out=g)  # remove the component along x_hat
    _per_row(np.multiply, g, rstd)  # dx


def layer_norm_forward(x, gamma=None, beta=None, eps=1e-5):
    r"""Layer normalisation over the last axis.

    Parameters
    ----------
    x : ndarray, shape (..., D), float16, float32 or float64
        Input; D >= 1. Any memory layout (C, Fortran, strided) gives bit-identical results. Never
        modified.
    gamma : ndarray, shape (D,), float, optional
        Scale. ``None`` means no scale (as if all ones); the backward then returns ``dgamma=None``.
    beta : ndarray, shape (D,), float, optional
        Shift. ``None`` means no shift; the backward then returns ``dbeta=None``.
    eps : float, default 1e-5
        Added to the variance. Must be finite and positive. 1e-5 is PyTorch's default.

    Returns
    -------
    y : ndarray, shape (..., D), the dtype of ``x``
        :math:`\gamma \odot \hat x + \beta`, C-contiguous.
    cache : LayerNormCache
        What :func:`layer_norm_backward` needs: a copy of ``x``, the shifted mean and rstd of each
        row, and gamma; the input's bytes plus 16 per row (and gamma).

    Raises
    ------
    TypeError
        If ``x``, ``gamma`` or ``beta`` is not a NumPy array of float16/32/64 (integers and complex
        are refused, not silently cast), is a masked array (its mask could not be honoured), or
        ``eps`` is not a real number. Other ndarray subclasses are used as plain arrays.
    ValueError
        If ``x`` is 0-d or has D = 0, ``gamma``/``beta`` is not of shape (D,), or ``eps`` is not
        finite and positive in float64 (too large for it, or positive but rounding to 0.0).

    Notes
    -----
    Per row, :math:`\mu = \frac1D\sum_j x_j`, :math:`\sigma^2 = \frac1D\sum_j (x_j-\mu)^2`,
    :math:`\hat x = (x - \mu)/\sqrt{\sigma^2 + \varepsilon}`, :math:`y = \gamma\hat x + \beta`.

    Accuracy: the statistics are computed in float64 after scaling each row by a power of two and
    shifting it by one of its own elements (both exact), with two passes. So the float32 error does
    not grow with the row's offset, as it does when the mean is accumulated in float32 (PyTorch
    loses 2 to 5 digits at offsets of 1e4 to 1e6 standard deviations); squares never overflow (a
    float32 row of 1e20 normalises correctly); a constant row gives x_hat == 0 exactly and D = 1 gives
    y == beta exactly. float16 and float32 results are the float64 result rounded once.

    Speed: rows are processed in blocks that fit in a core's cache, on every core
    (:mod:`lnlib.blocked`), so ``x`` is read once and ``y`` written once; results do not depend on
    the number of threads (set ``LNLIB_NUM_THREADS`` to choose it). On short rows the per-row numbers
    are written out in full and gamma and beta tiled, so that no NumPy loop runs over only D elements.

    NaN and Inf stay in their row: a row containing one gives NaN (Inf makes the row's mean infinite)
    in that row of ``y`` and leaves every other row untouched, as in PyTorch.

    Range: a result beyond the output dtype's range is returned as +-inf, and one below its smallest
    normal number as a subnormal or zero (the correctly rounded values), without a warning, for
    every output of the forward and the backward alike; check ``np.isfinite`` where it matters.
    Results in the subnormal range are accurate to a few units of the smallest subnormal, not to a
    relative tolerance. Outputs are new, native-byte-order arrays that share no memory with the
    inputs or the cache.

    Examples
    --------
    >>> import numpy as np
    >>> from lnlib import layer_norm_forward
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0]])
    >>> y, cache = layer_norm_forward(x)
    >>> np.round(y, 4)
    array([[-1.3416, -0.4472,  0.4472,  1.3416]])
    >>> float(np.round(cache.rstd[0], 4))
    0.8944
    """
    x = check_x(x)  # a plain ndarray view from here on: no subclass hook runs inside
    D = x.shape[-1]
    gamma = check_param("gamma", gamma, D)
    beta = check_param("beta", beta, D)
    eps = check_eps(eps)
    gamma64 = None if gamma is None else np.array(gamma, dtype=np.float64)
    beta64 = None if beta is None else beta.astype(np.float64)
    gamma_cols = None if gamma is None else _PerColumn(gamma64)
    beta_cols = None if beta is None else _PerColumn(beta64)

    dtype = np.dtype(x.dtype.type)  # native byte order, whatever the input's
    x_in = x.reshape(-1, D)  # M,D  a view where the layout allows, else one copy
    M = x_in.shape[0]
    x_own = np.empty((M, D), dtype=dtype)  # the cache's copy: any layout in, C order out
    y = np.empty((M, D), dtype=dtype)
    mean, rstd = np.empty(M), np.empty(M)
    pairwise = dtype == np.float64  # float64 output needs the pairwise sum's log2(D) error bound

    def work(r0, r1):
        d = np.empty((min(r1 - r0, blocked.rows_per_block(D)), D))  # float64, stays in cache
        with np.errstate(all="ignore"):  # NaN and Inf rows are allowed and stay in their row
            for a, b in _blocks(r0, r1, D):
                xb, db = x_own[a:b], d[: b - a]
                np.copyto(xb, x_in[a:b])  # one read of x from memory
                np.copyto(db, xb)  # float64, from the copy just written (in cache)
                mean[a:b], rstd[a:b] = _forward_block(db, xb, gamma_cols, beta_cols, eps, pairwise)
                np.copyto(y[a:b], db, casting="unsafe")  # rounded once; overflow gives +-inf

    blocked.run_chunks(work, M, D)
    cache = LayerNormCache(
        x=x_own.reshape(x.shape),
        shifted_mean=mean.reshape(x.shape[:-1]),
        rstd=rstd.reshape(x.shape[:-1]),
        gamma=gamma64,
        eps=eps,
        has_beta=beta is not None,
    )
    for a in (cache.x, cache.shifted_mean, cache.rstd, cache.gamma):
        if a is not None:
            a.flags.writeable = False  # the backward's inputs cannot be changed behind its back
    return y.reshape(x.shape), cache


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    """A new C-contiguous copy of ``a`` in ``dtype``, rounded once, without floating-point warnings.

    A value beyond the dtype's range rounds to +-inf and a value below its smallest normal to a
    subnormal or zero: both are the correctly rounded results, so they are returned silently, for
    every output alike (a caller who must know checks ``np.isfinite``). A warning here would become
    an error under ``-W error`` or ``np.seterr(all='raise')``.
    """
    with np.errstate(all="ignore"):
        return np.array(a, dtype=dtype, order="C", copy=True)


def _check_cache(cache) -> None:
    """Refuse anything but a LayerNormCache whose fields have the types and shapes the forward gives."""
    if not isinstance(cache, LayerNormCache):
        raise TypeError(
            f"cache must be the LayerNormCache returned by layer_norm_forward, got {type(cache).__name__}"
        )
    x, mean, rstd, gamma, eps, has_beta = cache

    def array(name, a, dtypes=(np.float64,)):
        if type(a) is not np.ndarray or a.dtype.type not in dtypes or not a.dtype.isnative:
            got = a.dtype.name if isinstance(a, np.ndarray) else type(a).__name__
            want = " or ".join(np.dtype(t).name for t in dtypes)
            raise TypeError(f"cache.{name} must be a {want} numpy.ndarray as layer_norm_forward makes it, got {got}")

    array("x", x, (np.float16, np.float32, np.float64))
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"cache.x must have shape (..., D) with D >= 1, got {x.shape}")
    for name, a in (("shifted_mean", mean), ("rstd", rstd)):
        array(name, a)
        if a.shape != x.shape[:-1]:
            raise ValueError(f"cache.{name} must have shape {x.shape[:-1]} (one per row of cache.x), got {a.shape}")
    if gamma is not None:
        array("gamma", gamma)
        if gamma.shape != x.shape[-1:]:
            raise ValueError(f"cache.gamma must have shape {x.shape[-1:]}, got {gamma.shape}")
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (float, np.floating)):
        raise TypeError(f"cache.eps must be a float, got {type(eps).__name__}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"cache.eps must be finite and positive, got {eps!r}")
    if not isinstance(has_beta, (bool, np.bool_)):
        raise TypeError(f"cache.has_beta must be a bool, got {type(has_beta).__name__}")


def layer_norm_backward(dy, cache):
    r"""Gradients of LayerNorm given the upstream gradient ``dy``.

    Parameters
    ----------
    dy : ndarray, shape (..., D), float16, float32 or float64
        Gradient of the loss with respect to ``y``; the shape of ``y``. Never modified.
    cache : LayerNormCache
        The second value returned by :func:`layer_norm_forward`. Not modified, so calling the
        backward twice gives the same answer.

    Returns
    -------
    dx : ndarray, shape (..., D), the dtype of the forward's ``x``
    dgamma : ndarray, shape (D,), the dtype of ``x``, or None if the forward had no ``gamma``
        Summed over every leading axis.
    dbeta : ndarray, shape (D,), the dtype of ``x``, or None if the forward had no ``beta``

    Raises
    ------
    TypeError
        If ``cache`` is not a :class:`LayerNormCache` whose fields have the types the forward gives
        them (the message names the field, ``cache.x_hat`` and so on), or ``dy`` is not a float NumPy
        array (a masked ``dy`` is refused).
    ValueError
        If ``dy`` does not have the shape of ``y``, or the cache's fields have inconsistent shapes.

    Notes
    -----
    With :math:`g = \gamma \odot dy` (or :math:`g = dy` without a scale), per row

    .. math::

        dx = \mathrm{rstd}\,\bigl(g - \overline{g} - \hat x\,\overline{g \hat x}\bigr),

    where the bar is the mean over the row: the first subtraction removes the component along the
    all-ones direction, the second the component along :math:`\hat x`, so ``dx`` is orthogonal to
    both (the book derives it five ways). :math:`\hat x` is recomputed from the cache's ``x``, shifted
    mean and rstd with the forward's own operations, so it is the forward's x_hat bit for bit.
    :math:`d\gamma = \sum dy\,\hat x` and :math:`d\beta = \sum dy` over all rows are summed in
    float64 in an order fixed by the shape alone (within row chunks, then pairwise over chunks), so
    repeated calls give bit-identical results on any number of threads. Where an intermediate
    could overflow or underflow (float64 ``x`` or ``dy``, or a ``gamma`` beyond 2**+-100), each row
    of ``dy`` (and ``gamma``, and ``dy`` as a whole for the sums over rows) is first scaled by a power
    of two, which is exact: ``dy`` near 1e308 gives the finite ``dx`` it should. Elsewhere that
    scaling provably changes nothing and is skipped. Overflow of the output dtype
    itself gives +-inf without a warning, as in the forward.

    NaN and Inf, as in PyTorch: one in a row of ``x`` makes that row of ``dx`` NaN and, through
    x_hat, all of ``dgamma``; ``dbeta`` never sees ``x`` and stays finite. One in ``dy`` makes its
    row of ``dx`` NaN and only its own column of ``dgamma`` and ``dbeta``.

    Examples
    --------
    >>> import numpy as np
    >>> from lnlib import layer_norm_forward, layer_norm_backward
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 3, 8))
    >>> gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    >>> y, cache = layer_norm_forward(x, gamma, beta)
    >>> dx, dgamma, dbeta = layer_norm_backward(rng.standard_normal(y.shape), cache)
    >>> dx.shape, dgamma.shape, dbeta.shape
    ((2, 3, 8), (8,), (8,))
    >>> bool(np.allclose(dx.sum(axis=-1), 0.0))  # dx is orthogonal to the all-ones direction
    True
    """
    _check_cache(cache)
    dy = check_dy(dy, cache.x.shape)
    if dy.shape[-1] == 2 or not _unscaled_is_exact(cache, dy):
        return _backward_scaled(dy, cache)
    D = dy.shape[-1]
    x, mean, rstd = cache.x.reshape(-1, D), cache.shifted_mean.reshape(-1), cache.rstd.reshape(-1)
    dy_in = dy.reshape(-1, D)  # M,D  a view where the layout allows
    M = x.shape[0]
    dx = np.empty((M, D), dtype=cache.dtype)
    gamma, eps = cache.gamma, cache.eps
    gamma_cols = None if gamma is None else _PerColumn(gamma)

    def work(r0, r1):
        n = min(r1 - r0, blocked.rows_per_block(D))
        x_hat_buf, g_buf = np.empty((n, D)), np.empty((n, D))  # float64, stay in cache
        dgamma = None if gamma is None else np.zeros(D)  # this chunk's sums over its rows
        dbeta = np.zeros(D) if cache.has_beta else None
        with np.errstate(all="ignore"):
            for a, b in _blocks(r0, r1, D):
                x_hat, g = x_hat_buf[: b - a], g_buf[: b - a]
                np.copyto(x_hat, x[a:b])
                _x_hat_inplace(x_hat, x[a:b], mean[a:b], rstd[a:b], eps)  # the forward's, bit for bit
                np.copyto(g, dy_in[a:b])  # dy in float64
                _backward_block(x_hat, g, rstd[a:b], gamma_cols, dgamma, dbeta)
                np.copyto(dx[a:b], g, casting="unsafe")  # rounded once
        return dgamma, dbeta

    parts = blocked.run_chunks(work, M, D)
    out = cache.dtype
    sums = [None if not parts or parts[0][i] is None else blocked.pairwise_sum([p[i] for p in parts]) for i in (0, 1)]
    if not parts:  # no rows: the sums over rows are zero
        sums = [None if gamma is None else np.zeros(D), np.zeros(D) if cache.has_beta else None]
    dgamma, dbeta = sums
    return (
        dx.reshape(dy.shape),
        None if dgamma is None else _cast(dgamma, out),
        None if dbeta is None else _cast(dbeta, out),
    )


def _unscaled_is_exact(cache: LayerNormCache, dy: np.ndarray) -> bool:
    """Whether the backward without power-of-two scaling gives the scaled backward's result.

    True for float16/float32 ``x`` and ``dy`` with every finite nonzero |gamma| in [2**-100, 2**100]:
    then |g| < 2**228 and every nonzero intermediate stays far inside float64's normal range (rstd of
    a float32 row lies in [2**-128, eps**-1/2]), so no operation overflows or underflows, and
    multiplying by powers of two, as the scaled route does, commutes with every rounding.
    """
    if cache.dtype.itemsize > 4 or dy.dtype.itemsize > 4:
        return False
    if cache.gamma is None:
        return True
    a = np.abs(cache.gamma[np.isfinite(cache.gamma)])
    a = a[a > 0]
    return a.size == 0 or bool(a.max() < 2.0**100 and a.min() > 2.0**-100)


def _backward_scaled(dy: np.ndarray, cache: LayerNormCache):
    """The backward with every row of dy, gamma, and dy as a whole scaled by powers of two (exact)."""
    D = dy.shape[-1]
    x_hat = cache.x_hat.reshape(-1, D)  # M,D  float64, recomputed
    rstd = cache.rstd.reshape(-1, 1)  # M,1
    dy64 = np.array(dy, dtype=np.float64, order="C").reshape(-1, D)  # M,D
    with np.errstate(all="ignore"):
        # Scale by powers of two (exact) so that no intermediate sum can overflow: dy near 1e308
        # has a finite dx, and a constant dy of 1e308 a zero one. The scales come back at the end.
        k_all = _exponents(dy64)  # one scale for the sums over rows
        dy_all = np.ldexp(dy64, -k_all)  # M,D  |.| < 1
        dbeta = np.ldexp(_sum_rows(dy_all), k_all) if cache.has_beta else None  # D
        dgamma = np.ldexp(_sum_rows(dy_all * x_hat), k_all) if cache.gamma is not None else None  # D
        k_row = _exponents(dy64, axis=1)  # M,1  one scale per row for dx
        g = np.ldexp(dy64, -k_row)  # M,D  |.| < 1
        k_gamma = 0
        if cache.gamma is not None:
            k_gamma = int(_exponents(cache.gamma))
            g = g * np.ldexp(cache.gamma, -k_gamma)  # M,D  |.| < 1: gamma * dy, scaled
        g_mean = g.mean(axis=1, keepdims=True)  # M,1
        gx_mean = (g * x_hat).mean(axis=1, keepdims=True)  # M,1
        dx = rstd * (g - g_mean - x_hat * gx_mean)  # M,D  scaled by 2**-(k_row + k_gamma)
        if D == 2:
            dx = _dx_two_columns(g, x_hat, rstd, cache.eps, dx)
        dx = np.ldexp(dx, k_row + k_gamma)
    out = cache.dtype
    return (
        _cast(dx, out).reshape(dy.shape),
        None if dgamma is None else _cast(dgamma, out),
        None if dbeta is None else _cast(dbeta, out),
    )
