"""``lnlib.variance``: the ``shift`` argument, the error models' closed forms, and sums of any length.

* ``shifted(x, dtype, shift)`` works in ``dtype``: a shift of another dtype is converted to it, so the
  results have ``dtype`` and equal those of the shift rounded to ``dtype`` first; ``shift=None`` is the
  first element, per row.
* ``typical_error`` against the module's table, evaluated independently with 50-digit mpmath, for each
  method, at lengths that are and are not powers of two; the table's rounded constants (0.82, 1.34) are
  those of the code; ``RMS_ROUNDING`` is the root-mean-square relative rounding error, measured.
* ``numpy_sum_depth(n)`` against the depth of a summation that repeats NumPy's order (and gives
  NumPy's sum bit for bit) at every n up to 1100 and at 3, 5, 7, 100, 1000, 1025, ...
* ``pairwise`` (Chan-Golub-LeVeque merging, with odd blocks carried) on lengths that are not powers of
  two, against the exact mean and variance.
"""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from lnlib import variance

U = {np.float32: 2.0**-24, np.float64: 2.0**-53}


# --- shift ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift_dtype", [np.float16, np.float32, np.float64, "python float"])
def test_shift_is_converted_to_the_working_dtype(rng, dtype, shift_dtype):
    x = (1e3 + rng.standard_normal((2, 3, 50))).astype(np.float64)
    shift = 1e3 + 0.1 * rng.standard_normal((2, 3))  # float64 values float32 cannot hold
    if shift_dtype == "python float":
        shift = shift[0, 0].item()
    else:
        shift = shift.astype(shift_dtype)
    mean, var = variance.shifted(x, dtype, shift=shift)
    assert mean.dtype == var.dtype == dtype and mean.shape == var.shape == (2, 3)
    rounded = np.asarray(shift).astype(dtype)  # the shift as the working dtype holds it
    mean_r, var_r = variance.shifted(x, dtype, shift=rounded)
    assert mean.tobytes() == mean_r.tobytes() and var.tobytes() == var_r.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_shift_is_the_first_element_of_each_row(rng, dtype):
    x = (1e4 + rng.standard_normal((4, 33))).astype(dtype)
    got = variance.shifted(x, dtype)
    first = variance.shifted(x, dtype, shift=x[..., 0])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(got, first))
    scalar = variance.shifted(x[0], dtype, shift=x[0, 0])
    assert scalar[0].shape == () and scalar[1] == got[1][0]


# --- the error models ---------------------------------------------------------------------------

# The module docstring's table, as printed there, and the same formula in mpmath (r, kappa, n are mpf)
TABLE = {
    "naive": ("sqrt(11) r kappa^2", lambda r, k, n: mpmath.sqrt(11) * r * k**2),
    "two_pass": ("sqrt(2) r (+) 2 sqrt(3) (r kappa)^2",
                 lambda r, k, n: mpmath.hypot(mpmath.sqrt(2) * r, 2 * mpmath.sqrt(3) * (r * k) ** 2)),
    # the table rounds sqrt(2/3) = 0.816 to 0.82 and sqrt(1.8) = 1.342 to 1.34 (checked below)
    "welford": ("r sqrt(n/3) (+) 0.82 r kappa (+) 1.34 n (r kappa)^2/6",
                lambda r, k, n: mpmath.sqrt((r * mpmath.sqrt(n / 3)) ** 2
                                            + (mpmath.sqrt(mpmath.mpf(2) / 3) * r * k) ** 2
                                            + (mpmath.sqrt(mpmath.mpf("1.8")) * n * (r * k) ** 2 / 6) ** 2)),
    "shifted": ("sqrt(40) r, whatever kappa", lambda r, k, n: mpmath.sqrt(40) * r),
    "pairwise": ("sqrt(2) r (+) 2 r kappa sqrt(log2(n)/n)",
                 lambda r, k, n: mpmath.sqrt(2 * r**2 + (2 * r * k * mpmath.sqrt(mpmath.log(n, 2) / n)) ** 2
                                             + (mpmath.log(n, 2) * (r * k) ** 2) ** 2)),
}


def test_the_table_is_the_one_in_the_module():
    doc = " ".join(variance.__doc__.split())
    for method, (text, _) in TABLE.items():
        assert " ".join(text.split()) in doc, method
    assert "(+) log2(n) (r kappa)^2" in doc  # pairwise's third term, on its own line of the table
    assert round(math.sqrt(2 / 3), 2) == 0.82 and round(math.sqrt(1.8), 2) == 1.34
    assert set(TABLE) == set(variance.METHODS)


@pytest.mark.parametrize("method", list(TABLE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_typical_error_is_the_tables_closed_form(method, dtype):
    # float64 evaluation of a closed form of at most 16 operations on positive terms (no cancellation),
    # each within u64 of exact, and log2: relative error below 16 u64; 32 u64 allows twice that
    with mpmath.workdps(50):
        r = mpmath.mpf(U[dtype]) / mpmath.sqrt(8 * mpmath.log(2))
        for n in (2, 3, 5, 7, 100, 1000, 1024, 1025, 65536):
            for kappa in (1.0, 3.0, 10.0, 1e3, 1e6, 1e9):
                got = variance.typical_error(method, kappa, n, dtype)
                want = TABLE[method][1](r, mpmath.mpf(kappa), mpmath.mpf(n))
                assert abs(mpmath.mpf(float(got)) / want - 1) <= 32 * 2.0**-53, (n, kappa)


def test_typical_error_takes_arrays_of_kappa():
    kappa = np.array([1.0, 10.0, 1e4])
    got = variance.typical_error("two_pass", kappa, 512)
    assert got.shape == (3,)
    assert [float(g) for g in got] == [float(variance.typical_error("two_pass", k, 512)) for k in kappa]


def test_rms_rounding_is_measured_by_rounding(rng):
    # values spread evenly in log scale over [1, 2), rounded to float32: the root-mean-square of the
    # relative error, in units of u, is 1/sqrt(8 ln 2) = 0.4247. With 200000 samples the estimate's
    # relative standard deviation is about sqrt(0.8/200000) = 0.2%; 1% is five of them.
    assert variance.RMS_ROUNDING == pytest.approx(float(1 / mpmath.sqrt(8 * mpmath.log(2))), rel=1e-15)
    v = 2.0 ** rng.uniform(0, 1, 200_000)
    rel = (v.astype(np.float32).astype(np.float64) - v) / v
    assert np.sqrt(np.mean(rel**2)) / U[np.float32] == pytest.approx(variance.RMS_ROUNDING, rel=0.01)


# --- NumPy's summation depth --------------------------------------------------------------------


def _numpy_sum_with_depth(a):
    """NumPy's pairwise sum of a contiguous float array (numpy/_core/src/umath/loops_utils.h.src),
    returning (sum, depth): depth is the longest chain of roundings any one term went through."""
    n, t = len(a), a.dtype.type
    if n < 8:
        res, depth = t(0), 0
        for i, v in enumerate(a):
            res = t(res + v)
            depth += i > 0  # adding the first term to 0 is exact
        return res, depth
    if n <= 128:
        r, d = list(a[:8]), [0] * 8
        i = 8
        while i < n - n % 8:
            r = [t(r[j] + a[i + j]) for j in range(8)]
            d = [dj + 1 for dj in d]
            i += 8
        pairs = [(t(r[0] + r[1]), max(d[0], d[1]) + 1), (t(r[2] + r[3]), max(d[2], d[3]) + 1),
                 (t(r[4] + r[5]), max(d[4], d[5]) + 1), (t(r[6] + r[7]), max(d[6], d[7]) + 1)]
        quads = [(t(pairs[0][0] + pairs[1][0]), max(pairs[0][1], pairs[1][1]) + 1),
                 (t(pairs[2][0] + pairs[3][0]), max(pairs[2][1], pairs[3][1]) + 1)]
        res, depth = t(quads[0][0] + quads[1][0]), max(quads[0][1], quads[1][1]) + 1
        for v in a[i:]:
            res, depth = t(res + v), depth + 1
        return res, depth
    half = n // 2 - (n // 2) % 8
    (s1, d1), (s2, d2) = _numpy_sum_with_depth(a[:half]), _numpy_sum_with_depth(a[half:])
    return t(s1 + s2), max(d1, d2) + 1


@pytest.mark.parametrize("n", list(range(1, 300)) + [1000, 1023, 1024, 1025, 1100, 4097, 5000])  # 3, 5, 7, 100 too
def test_numpy_sum_depth_at_any_length(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    total, depth = _numpy_sum_with_depth(x)
    assert total == np.add.reduce(x)  # the simulation is NumPy's order, bit for bit
    assert variance.numpy_sum_depth(n) == depth


# --- pairwise merging on lengths that are not powers of two ---------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 12, 100, 1000, 1025])
def test_pairwise_on_any_length(rng, n):
    # Chan, Golub and LeVeque's bound for pairwise merging: relative error of the variance at most
    # about log2(n) u kappa per merge level, (4 log2(n) + 4) u kappa allowing for the mean's rounding
    # (the existing tests use 4 log2(n) u kappa at n = 512); kappa = sqrt(1 + mean^2/var)
    x = 5.0 + rng.standard_normal((3, n))
    mean, var = variance.pairwise(x)
    for row, m, v in zip(x, mean, var):
        f = [Fraction(float(e)) for e in row]
        exact_mean = sum(f) / n
        exact_var = sum((e - exact_mean) ** 2 for e in f) / n
        scale = abs(float(exact_mean)) + math.sqrt(float(exact_var))
        assert abs(Fraction(float(m)) - exact_mean) <= (math.log2(n) + 2) * U[np.float64] * Fraction(scale)
        if n == 1:
            assert v == 0.0
            continue
        kappa = math.sqrt(1 + float(exact_mean) ** 2 / float(exact_var))
        assert abs(Fraction(float(v)) - exact_var) <= (4 * math.log2(n) + 4) * U[np.float64] * kappa * exact_var
