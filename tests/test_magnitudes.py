"""float64 rows either side of lnlib's power-of-two scaling threshold, and the cache that route leaves.

``lnlib.layernorm`` scales a float64 row by a power of two when its largest magnitude is ``m 2**k``
with ``|k| > WIDE_EXPONENT`` (400). Without the scaling, a row much beyond 2**511 (1.3e154) squares to
infinity, and a row below 2**-459 can hold deviations (a few units in its last place) whose squares
are subnormal, so the variance loses its digits. The suite tested 1e+-130 and 1e+-200 only; here rows
from 1e130 to 1e307 (every ten decades, and 1e154/1e155 where squares start to overflow) and from
1e-130 to 1e-300 (denser from 1e-135 to 1e-145), and rows whose largest element is 2**+-399 to
2**+-402, are held to the long-double oracle (and one row to mpmath), with

* rows spread about zero (a square overflows first),
* rows at an offset spread over a few units in their last place (the deviations' squares underflow
  first: ``eps`` is then the smallest subnormal, so that the variance, not ``eps``, decides x_hat;
  between 2**-460 and 2**-480 only these rows can tell a scaled row from an unscaled one),

and the cache of the scaled rows (``cache.x``, ``cache.shifted_mean``, ``cache.rstd``) and of rows
longer than one BLAS dot product (``DOT_MAX``) is checked against an independent exact computation.
The backward's own threshold (float16/float32 inputs skip the scaling while every |gamma| lies in
[2**-100, 2**100]) is tested on both sides too, up to a gamma * dy that overflows float64.
"""

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward, layernorm
from lnlib.oracle import LONGDOUBLE_IS_WIDER, correctly_rounded, layer_norm_longdouble, layer_norm_mpmath, max_rel_error
from lnlib.variance import numpy_sum_depth

pytestmark = pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="np.longdouble is float64 on this platform")

U = 2.0**-53  # unit roundoff of float64
TINY_EPS = float(np.finfo(np.float64).smallest_subnormal)
D = 48  # not a power of two: a mean of deviations in whole units of the last place is then not exact
# Measured: the worst max|error|/max|exact| over 20 seeds and every case of the three tests below
# was 4.8e-16 (y), 4.1e-16 (dx), 4.3e-16 (dgamma), 3.8e-16 (the mpmath row); 10x margin. A row that
# squares to inf, or whose variance is subnormal, is off by 1e-12 to 1.
TOL = 5e-15

BIG = [130, 140, 150, 154, 155, 160, 170, 180, 190, 200, 250, 300, 307]
SMALL = [-130, -135, -139, -141, -143, -145, -150, -155, -160, -170, -180, -190, -200, -250, -300]


def _rows(rng, e, kind):
    scale = 10.0**e
    if kind == "spread":  # about zero: deviations as large as the row
        return scale * rng.standard_normal((4, D))
    if kind == "ulps":  # at an offset, deviations of 0 to 8 units in its last place: the smallest a row holds
        return scale * (1.0 + 2.0**-52 * rng.integers(-8, 9, (4, D)))
    return scale * (1.0 + 2.0**-50 * rng.standard_normal((4, D)))  # at an offset, spread 2**-50


def mp_to_longdouble(values):
    """mpmath numbers to long double without a detour through float64 (30 digits, more than it holds)."""
    return np.array([np.longdouble(mpmath.nstr(v, 30, strip_zeros=False)) for v in values])


def _close(got, exact):
    """Within TOL of the exact answer, or, where the answer is subnormal, within a few units of the
    smallest subnormal (the README's absolute accuracy there: one rounding per term summed)."""
    abs_err = float(np.max(np.abs(got.astype(np.longdouble) - np.asarray(exact, np.longdouble))))
    return max_rel_error(got, exact) < TOL or abs_err <= 4 * D * TINY_EPS


def _check(x, eps, rng):
    gamma = rng.uniform(0.5, 2.0, D)  # no beta: y = gamma x_hat keeps a relative error measurable
    dy = rng.standard_normal(x.shape)
    y, cache = layer_norm_forward(x, gamma, None, eps)
    dx, dgamma, _ = layer_norm_backward(dy, cache)
    ry, rdx, rdg, _ = layer_norm_longdouble(x, gamma, None, eps, dy)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert _close(y, ry) and _close(dx, rdx) and _close(dgamma, rdg)
    # one row against 50 digits, independent of the long double
    y_mp, dx_mp = layer_norm_mpmath(x[0], gamma, None, eps, dy[0])
    assert _close(y[0], mp_to_longdouble(y_mp)) and _close(dx[0], mp_to_longdouble(dx_mp))


def test_the_threshold_is_where_the_module_says():
    # the rows below are chosen around this value: if it moves on purpose, move them too
    assert layernorm.WIDE_EXPONENT == 400
    assert np.frexp(2.0**400)[1] == 401 and np.frexp(np.nextafter(2.0**400, 0))[1] == 400


@pytest.mark.parametrize("e", BIG)
@pytest.mark.parametrize("kind", ["spread", "offset"])
def test_large_float64_rows(rng, e, kind):
    x = _rows(rng, e, kind)
    assert np.all(np.isfinite(x))
    _check(x, 1e-5, rng)


@pytest.mark.parametrize("e", SMALL)
@pytest.mark.parametrize("kind", ["spread", "offset", "ulps"])
@pytest.mark.parametrize("eps", [1e-5, TINY_EPS], ids=["eps=1e-5", "eps=smallest_subnormal"])
def test_small_float64_rows(rng, e, kind, eps):
    x = _rows(rng, e, kind)
    assert np.all(x != 0)
    _check(x, eps, rng)


@pytest.mark.parametrize("k", [399, 400, 401, 402, -399, -400, -401, -402])
def test_rows_at_the_threshold_itself(rng, k):
    # largest magnitude just below and just above 2**+-400: both routes must agree with the oracle
    x = rng.standard_normal((4, D))
    x *= 2.0**k / np.max(np.abs(x), axis=1, keepdims=True)
    _check(x, TINY_EPS if k < 0 else 1e-5, rng)


# --- the cache --------------------------------------------------------------------------------


def _exact_mean_and_var(row):
    """The mean of ``row - row[0]`` and the variance of ``row``, exactly, as Fractions."""
    f = [Fraction(float(v)) for v in row]
    n = len(f)
    d = [v - f[0] for v in f]
    mean_d = sum(d) / n
    var = sum((v - mean_d) ** 2 for v in d) / n
    return mean_d, var


def _check_cache(x, cache, eps, depth):
    """cache.x bit for bit; shifted_mean and rstd within the rounding-error model of their sums.

    ``depth`` bounds the number of roundings a term of a sum goes through (NumPy's pairwise sum:
    ``numpy_sum_depth(D)``; an einsum or BLAS dot in any order: D - 1).

    * shifted mean: each ``x_j - x_0`` rounded once (u), the sum (depth u sum|d|), the division (u):
      ``|err| <= (depth + 2) u mean|d|``.
    * variance: to first order the error of the mean cancels (the deviations sum to zero); each
      deviation carries u|d_j| from the shift and u|xc_j| from the subtraction of the mean, the square
      u, the sum depth u, the division u: ``(depth + 5 + 2 kappa) u`` relative, with
      ``kappa = sqrt(1 + mean_d**2 / var)``; rstd = 1/sqrt(var + eps) halves it and adds three
      roundings. Powers of two (the scaled route) are exact.
    """
    assert cache.x.dtype == x.dtype and cache.x.flags.c_contiguous and not np.shares_memory(cache.x, x)
    assert cache.x.tobytes() == np.ascontiguousarray(x).tobytes()
    n = x.shape[-1]
    for row, mean, rstd in zip(x.reshape(-1, n), cache.shifted_mean.reshape(-1), cache.rstd.reshape(-1)):
        mean_d, var = _exact_mean_and_var(row)
        abs_d = float(np.mean(np.abs(row.astype(np.float64) - float(row[0]))))
        assert abs(Fraction(float(mean)) - mean_d) <= (depth + 2) * U * Fraction(abs_d)
        kappa = float(np.sqrt(float(1 + mean_d**2 / var))) if var else 1.0
        with mpmath.workdps(40):
            exact = 1 / mpmath.sqrt(mpmath.mpf(var.numerator) / var.denominator + mpmath.mpf(eps))
            rel = abs(mpmath.mpf(float(rstd)) / exact - 1)
        assert rel <= ((depth + 5 + 2 * kappa) / 2 + 3) * U


@pytest.mark.parametrize("scale", [1e130, 1e160, 1e200, 1e300, 1e-130, 1e-160, 1e-200, 1e-300])
def test_cache_of_scaled_rows(rng, scale):
    # scaled rows next to ordinary ones in one block: the cache must hold each row's own numbers
    x = rng.standard_normal((6, 96)) + 3.0
    x[::2] *= scale
    eps = TINY_EPS if scale < 1 else 1e-5
    y, cache = layer_norm_forward(x, None, None, eps)
    _check_cache(x, cache, eps, numpy_sum_depth(96))
    assert np.array_equal(cache.x_hat, y)  # and the backward's x_hat is the forward's


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [layernorm.DOT_MAX + 8, 3 * layernorm.DOT_MAX, 16411])  # 16411: prime
def test_cache_of_rows_longer_than_one_dot_product(rng, dtype, n):
    # float32 rows: the variance in pieces of at most DOT_MAX (or one einsum where no divisor fits);
    # float64 rows: NumPy's pairwise sums
    assert n > layernorm.DOT_MAX
    x = (rng.standard_normal((3, n)) * 2 + 50).astype(dtype)
    gamma = rng.standard_normal(n).astype(dtype)
    y, cache = layer_norm_forward(x, gamma)
    depth = numpy_sum_depth(n) if dtype == np.float64 else n - 1
    _check_cache(x, cache, 1e-5, depth)
    ry = layer_norm_longdouble(x, gamma)
    # y against the documented bounds: 2e-6 for float32 (README), TOL for float64
    assert max_rel_error(y, ry) < (2e-6 if dtype == np.float32 else TOL)


# --- the backward's other threshold: gamma beyond 2**+-100 ------------------------------------


@pytest.mark.parametrize("dtype, dy_scale", [(np.float32, 100.0), (np.float32, 1e30), (np.float16, 100.0)])
@pytest.mark.parametrize("gamma_scale", [2.0**99, 2.0**101, 1e200, 1e300, 1e307, 2.0**-99, 2.0**-101, 1e-300],
                         ids=["2**99", "2**101", "1e200", "1e300", "1e307", "2**-99", "2**-101", "1e-300"])
def test_float32_and_float16_backward_with_gamma_either_side_of_2_to_the_100(rng, dtype, dy_scale, gamma_scale):
    # float16/float32 x and dy skip the power-of-two scaling while every |gamma| lies in
    # [2**-100, 2**100] (layernorm._unscaled_is_exact): then no float64 intermediate can overflow.
    # Beyond, gamma * dy may (1e307 * 100, 1e300 * 1e30): the results must still be the correctly rounded ones,
    # +-inf of the right sign where the exact value is beyond the dtype's range, never NaN.
    x = rng.standard_normal((4, 16)).astype(dtype)
    gamma = rng.uniform(0.5, 2, 16) * gamma_scale  # float64: only a float64 gamma goes this far
    gamma[::2] = rng.uniform(0.5, 2, 8)
    dy = (dy_scale * rng.standard_normal(x.shape)).astype(dtype)
    with np.errstate(all="raise"):
        y, cache = layer_norm_forward(x, gamma, np.zeros(16, dtype))
        got = (y, *layer_norm_backward(dy, cache))
    with np.errstate(all="ignore"):
        exact = layer_norm_longdouble(x, gamma, np.zeros(16), 1e-5, dy)
    for name, g, e in zip(("y", "dx", "dgamma", "dbeta"), got, exact):
        assert g.dtype == dtype and not np.isnan(g).any(), name
        beyond = np.abs(e) > np.finfo(dtype).max
        assert np.all(np.isinf(g[beyond]) & (np.sign(g[beyond]) == np.sign(e[beyond]))), name
        assert correctly_rounded(g[~beyond], e[~beyond], dtype), name


# --- two columns of tiny rows: the D = 2 backward's own formula ------------------------------

# Measured after the fix: worst per-row max|error|/max|exact| over 20 seeds 8.3e-14 (forming g1 - g2
# from rounded products gamma_j dy_j costs u |g| / |g1 - g2|); 10x margin, rounded up. Before it, the
# D = 2 formula divided by x_hat . x_hat, subnormal once x_hat fell below 1e-154: errors of 1e-7 to 4e-2.
TOL_D2 = 1e-12


@pytest.mark.parametrize("e", [-130, -150, -155, -160, -163, -170, -200, -250, -300, -310, -320])
@pytest.mark.parametrize("eps", [1e-5, 1.0, TINY_EPS], ids=["eps=1e-5", "eps=1", "eps=smallest_subnormal"])
def test_two_columns_of_tiny_float64_rows(rng, e, eps):
    # the variance far below eps: x_hat = (x - mu) rstd is tiny, and dx = rstd (g - mean g) to first order
    x = float(f"1e{e}") * rng.uniform(-1, 1, (16, 2))
    gamma = rng.uniform(0.5, 2, 2)
    dy = rng.standard_normal(x.shape)
    _, cache = layer_norm_forward(x, gamma, None, eps)
    dx = layer_norm_backward(dy, cache)[0]
    exact = layer_norm_longdouble(x, gamma, None, eps, dy)[1]
    for row in range(16):
        assert max_rel_error(dx[row], exact[row]) < TOL_D2, (row, x[row])
