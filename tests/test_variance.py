"""Five variance algorithms: each right on easy data, and each failing the way the theory says."""

import numpy as np
import pytest

from lnlib import variance

METHODS = list(variance.METHODS.items())


def exact_var(x):
    xl = np.asarray(x).astype(np.longdouble)
    d = xl - xl[..., :1]
    c = d - d.mean(-1, keepdims=True)
    return (c * c).mean(-1), xl.mean(-1)


@pytest.mark.parametrize("name,f", METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_well_conditioned(rng, name, f, dtype):
    x = rng.standard_normal((8, 1000)).astype(dtype)
    var, mean = exact_var(x)
    m, v = f(x, dtype)
    assert m.dtype == v.dtype == dtype and v.shape == (8,)
    # the chapter's RMS model of each method (test_typical_error_model_within_factor_3 holds it to a
    # factor 3), times 10 for the largest of 8 rows and a margin
    assert np.max(np.abs(v - var) / var) < 30 * variance.typical_error(name, 1.0, 1000, dtype)
    # any order of summing 1000 terms: within (n - 1) u sum|x| / n of the mean (Higham's gamma_n)
    u = np.finfo(dtype).eps / 2
    assert np.max(np.abs(m - mean)) < 1000 * u * float(np.max(np.mean(np.abs(x), -1)))


@pytest.mark.parametrize("name,f", METHODS)
def test_small_cases(name, f):
    m, v = f(np.array([2.0]))
    assert m == 2.0 and v == 0.0
    m, v = f(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    # one ulp of the mean (ulp(4) = 8.9e-16) and 11 of the variance: each method works on small
    # integers here (sums up to 140, divisions by k <= 7) with a handful of roundings, and every one
    # is exact on every variation of tests/variation_matrix.py
    assert abs(m - 4.0) < 1e-15 and abs(v - 4.0) < 1e-14


@pytest.mark.parametrize("name,f", METHODS)
def test_input_untouched_and_shape(rng, name, f):
    x = rng.standard_normal((2, 3, 5))
    before = x.copy()
    m, v = f(x)
    np.testing.assert_array_equal(x, before)
    assert m.shape == v.shape == (2, 3)


def test_naive_goes_negative_and_two_pass_does_not(rng):
    x = (3000.0 + 0.01 * rng.standard_normal((256, 64))).astype(np.float32)
    _, v_naive = variance.naive(x, np.float32)
    _, v_two = variance.two_pass(x, np.float32)
    assert np.any(v_naive < 0)  # then rsqrt(var + eps) is NaN
    assert np.all(v_two >= 0)
    with np.errstate(invalid="ignore"):
        assert np.any(np.isnan(1 / np.sqrt(v_naive + 1e-5)))


@pytest.mark.parametrize("offset", [1e2, 1e3, 1e4])
def test_error_ordering_at_offsets(rng, offset):
    x = (offset + rng.standard_normal((32, 512))).astype(np.float32)
    var, _ = exact_var(x)
    err = {n: float(np.max(np.abs(f(x, np.float32)[1] - var) / var)) for n, f in METHODS}
    u = np.finfo(np.float32).eps / 2
    kappa = np.hypot(1, offset)  # condition number sqrt(1 + mean^2/var)
    h = variance.numpy_sum_depth(512)  # NumPy sums pairwise: depth log2(n) + 11, not n - 1
    # worst-case bounds (Chan, Golub and LeVeque 1983, with NumPy's summation depth for n)
    assert err["naive"] <= (3 * h + 2) * u * kappa**2 + u
    assert err["two_pass"] <= (h + 3) * u + (h * u * kappa) ** 2
    assert err["pairwise"] <= 4 * u * kappa * np.log2(512)
    # and the difference the chapter is about: orders of magnitude
    assert err["naive"] > 10 * err["two_pass"]
    assert err["naive"] > 10 * err["shifted"]


@pytest.mark.parametrize("name", list(variance.METHODS))
@pytest.mark.parametrize("dtype,offsets", [(np.float32, [1.0, 1e2, 1e3, 3e3]),
                                           (np.float64, [1.0, 1e3, 1e6, 1e9])])
def test_typical_error_model_within_factor_3(name, dtype, offsets):
    # the RMS over rows of the relative error follows lnlib.variance.typical_error
    rng = np.random.default_rng(2)
    for off in offsets:
        x = (off + rng.standard_normal((64, 1024))).astype(dtype)
        var, _ = exact_var(x)
        rel = (variance.METHODS[name](x, dtype)[1] - var) / var
        rms = float(np.sqrt(np.mean(rel.astype(float) ** 2)))
        model = float(variance.typical_error(name, np.hypot(1, off), 1024, dtype))
        assert 1 / 3 < rms / model < 3, (off, rms, model)


def test_typical_error_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        variance.typical_error("kahan", 10.0, 8)


def _numpy_pairwise(a):
    """NumPy's float summation order, written out (numpy/_core/src/umath/loops_utils.h.src)."""
    n, t = len(a), a.dtype.type
    if n < 8:
        res = t(0)
        for v in a:
            res = t(res + v)
        return res
    if n <= 128:
        r = list(a[:8])
        i = 8
        while i < n - n % 8:
            r = [t(r[j] + a[i + j]) for j in range(8)]
            i += 8
        res = t(t(t(r[0] + r[1]) + t(r[2] + r[3])) + t(t(r[4] + r[5]) + t(r[6] + r[7])))
        for v in a[i:]:
            res = t(res + v)
        return res
    half = n // 2 - (n // 2) % 8
    return t(_numpy_pairwise(a[:half]) + _numpy_pairwise(a[half:]))


@pytest.mark.parametrize("n", [5, 37, 128, 130, 1000, 1024])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_sum_is_blocked_pairwise(rng, n, dtype):
    # the summation order the book's error models (and numpy_sum_depth) assume
    x = (1e3 + rng.standard_normal((3, n))).astype(dtype)
    assert [_numpy_pairwise(row) for row in x] == list(x.sum(-1))


def test_numpy_sum_depth_bounds_the_error(rng):
    assert [variance.numpy_sum_depth(n) for n in (1, 7, 8, 128, 1024, 4096)] == [0, 6, 3, 18, 21, 23]
    u = np.finfo(np.float32).eps / 2
    for n in (100, 1024, 5000):
        x = (1e3 + rng.standard_normal((64, n))).astype(np.float32)
        exact = x.astype(np.longdouble).sum(-1)
        bound = variance.numpy_sum_depth(n) * u * np.abs(x).astype(np.longdouble).sum(-1)
        assert np.all(np.abs(x.sum(-1) - exact) <= bound)


def test_welford_drifts_in_float32_with_long_rows(rng):
    # every update rounds the running mean; later updates damp the error made at step j by j/D,
    # so the mean ends about r |mean| sqrt(D/3) off; pairwise merging stays at sqrt(2) r |mean|
    x = (1e4 + rng.standard_normal((8, 8192))).astype(np.float32)
    var, _ = exact_var(x)
    e_w = np.max(np.abs(variance.welford(x, np.float32)[1] - var) / var)
    e_p = np.max(np.abs(variance.pairwise(x, np.float32)[1] - var) / var)
    assert e_w > 3 * e_p


def test_welford_mean_drift_follows_the_damped_model(rng):
    D = 4096
    x = (1e3 + rng.standard_normal((64, D))).astype(np.float32)
    exact = x.astype(np.longdouble).mean(-1)
    s = float(np.spacing(np.float32(1e3)))  # one rounding of the running mean: RMS s / sqrt(12)
    rms_w = float(np.sqrt(np.mean((variance.welford(x, np.float32)[0] - exact) ** 2)))
    rms_p = float(np.sqrt(np.mean((variance.pairwise(x, np.float32)[0] - exact) ** 2)))
    assert 2 / 3 < rms_w / (s / np.sqrt(12) * np.sqrt(D / 3)) < 1.5
    assert 2 / 3 < rms_p / (s / np.sqrt(6)) < 1.5


def test_float64_all_stable_methods_good_at_1e6(rng):
    x = 1e6 + rng.standard_normal((4, 2048))
    var, _ = exact_var(x)
    for n in ("two_pass", "welford", "shifted", "pairwise"):
        # 30 times the chapter's RMS model at kappa = 1e6 (see test_well_conditioned)
        tol = 30 * variance.typical_error(n, 1e6, 2048, np.float64)
        assert np.max(np.abs(variance.METHODS[n](x)[1] - var) / var) < tol, n


def test_bad_dtype_and_shape():
    with pytest.raises(ValueError, match="dtype"):
        variance.two_pass(np.ones(3), np.float16)
    with pytest.raises(ValueError, match="D >= 1"):
        variance.naive(np.ones((2, 0)))
