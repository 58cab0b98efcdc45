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
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-13)])
def test_well_conditioned(rng, name, f, dtype, tol):
    x = rng.standard_normal((8, 1000)).astype(dtype)
    var, mean = exact_var(x)
    m, v = f(x, dtype)
    assert m.dtype == v.dtype == dtype and v.shape == (8,)
    assert np.max(np.abs(v - var) / var) < tol
    assert np.max(np.abs(m - mean)) < tol


@pytest.mark.parametrize("name,f", METHODS)
def test_small_cases(name, f):
    m, v = f(np.array([2.0]))
    assert m == 2.0 and v == 0.0
    m, v = f(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
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
    n, kappa = 512, offset  # condition number |mean| / std
    # Chan, Golub and LeVeque (1983): textbook one-pass ~ n u kappa^2, two-pass ~ n u + (n u kappa)^2,
    # pairwise ~ u kappa log2(n)
    assert err["naive"] <= n * u * kappa**2
    assert err["two_pass"] <= n * u + (n * u * kappa) ** 2
    assert err["pairwise"] <= 4 * u * kappa * np.log2(n)
    # and the difference the chapter is about: orders of magnitude
    assert err["naive"] > 10 * err["two_pass"]
    assert err["naive"] > 10 * err["shifted"]


def test_welford_drifts_in_float32_with_long_rows(rng):
    # the running mean absorbs a rounding per element; pairwise merging does not
    x = (1e4 + rng.standard_normal((8, 8192))).astype(np.float32)
    var, _ = exact_var(x)
    e_w = np.max(np.abs(variance.welford(x, np.float32)[1] - var) / var)
    e_p = np.max(np.abs(variance.pairwise(x, np.float32)[1] - var) / var)
    assert e_w > 3 * e_p


def test_float64_all_stable_methods_good_at_1e6(rng):
    x = 1e6 + rng.standard_normal((4, 2048))
    var, _ = exact_var(x)
    for n in ("two_pass", "welford", "shifted", "pairwise"):
        assert np.max(np.abs(variance.METHODS[n](x)[1] - var) / var) < 1e-6, n


def test_bad_dtype_and_shape():
    with pytest.raises(ValueError, match="dtype"):
        variance.two_pass(np.ones(3), np.float16)
    with pytest.raises(ValueError, match="D >= 1"):
        variance.naive(np.ones((2, 0)))
