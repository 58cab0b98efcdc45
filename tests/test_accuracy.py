"""Accuracy against the long-double oracle on the same input values (max abs error / max abs value)."""

import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import LONGDOUBLE_IS_WIDER, correctly_rounded, layer_norm_longdouble, layer_norm_mpmath, max_rel_error

from .helpers import CONTRACT, errors, mp_to_longdouble, shifted_rows

F32_Y, F32_G = CONTRACT[np.float32]  # derived in tests/helpers.py
F64_Y, F64_G = CONTRACT[np.float64]

needs_wide = pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="np.longdouble is float64 on this platform")


@needs_wide
@pytest.mark.parametrize("offset", [0.0, 1e2, 1e4, 1e5, 1e6, -1e6])
def test_float32_offsets(rng, offset):
    D = 4096
    x = shifted_rows(rng, (64, D), offset, np.float32)
    gamma, beta = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ey, edx, edg, edb = errors(x, gamma, beta, dy)
    assert ey < F32_Y and edx < F32_G and edg < F32_G and edb < F32_G, (ey, edx, edg, edb)


@needs_wide
@pytest.mark.parametrize("D", [1, 2, 3, 7, 64, 1000, 65536])
def test_float32_many_D_at_offset_1e6(rng, D):
    x = shifted_rows(rng, (4, D), 1e6, np.float32)
    gamma, beta = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ey, edx, edg, edb = errors(x, gamma, beta, dy)
    assert ey < F32_Y and edx < F32_G and edg < F32_G and edb < F32_G, (ey, edx, edg, edb)


@needs_wide
@pytest.mark.parametrize("scale", [1e30, 1e20, 1e-30, 1e-38])
def test_float32_huge_and_tiny_magnitudes(rng, scale):
    # 1e20 squared overflows float32: an implementation that squares in float32 returns y == beta here
    x = (scale * rng.standard_normal((8, 512))).astype(np.float32)
    assert np.all(np.isfinite(x))
    gamma = rng.standard_normal(512).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ey, edx, edg, _ = errors(x, gamma, None, dy)
    assert ey < F32_Y and edx < F32_G and edg < F32_G, (ey, edx, edg)


@needs_wide
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6, 1e8, 1e10, -1e10])
def test_float64_offsets(rng, offset):
    D = 1024
    x = shifted_rows(rng, (32, D), offset, np.float64)
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    dy = rng.standard_normal(x.shape)
    ey, edx, edg, edb = errors(x, gamma, beta, dy)
    assert ey < F64_Y and edx < F64_G and edg < F64_G and edb < F64_G, (ey, edx, edg, edb)


@needs_wide
@pytest.mark.parametrize("scale", [1e300, 1e200, 1e-200, 1e-300])
def test_float64_extreme_magnitudes(rng, scale):
    # squares of 1e200 overflow float64 and squares of 1e-200 underflow: the power-of-two scaling
    # in lnlib keeps both exact
    x = scale * rng.standard_normal((4, 256))
    gamma = rng.standard_normal(256)
    dy = rng.standard_normal(x.shape)
    y, cache = layer_norm_forward(x, gamma)
    ry = layer_norm_longdouble(x, gamma)
    assert np.all(np.isfinite(y))
    assert max_rel_error(y, ry) < F64_Y
    if scale >= 1e-200:  # rstd * D-sized terms stay normal numbers
        _, rdx, rdg, _ = layer_norm_longdouble(x, gamma, None, 1e-5, dy)
        dx, dgamma, _ = layer_norm_backward(dy, cache)
        assert max_rel_error(dgamma, rdg) < F64_G
        assert max_rel_error(dx, rdx) < F64_G


@needs_wide
@pytest.mark.parametrize("offset", [0.0, 30.0, 1000.0])
def test_float16_correctly_rounded(rng, offset):
    D = 256
    x = shifted_rows(rng, (16, D), offset, np.float16)
    gamma, beta = rng.standard_normal(D).astype(np.float16), rng.standard_normal(D).astype(np.float16)
    dy = rng.standard_normal(x.shape).astype(np.float16)
    y, cache = layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    for got, exact in ((y, ry), (dx, rdx), (dgamma, rdg), (dbeta, rdb)):
        assert got.dtype == np.float16
        assert correctly_rounded(got, exact, np.float16)


def test_d1_is_exact(rng):
    for dtype in (np.float16, np.float32, np.float64):
        x = (rng.standard_normal((5, 1)) * 1e3 + 7).astype(dtype)
        gamma, beta = np.array([2.5], dtype), np.array([-0.75], dtype)
        y, cache = layer_norm_forward(x, gamma, beta)
        dx, dgamma, dbeta = layer_norm_backward(rng.standard_normal((5, 1)).astype(dtype), cache)
        np.testing.assert_array_equal(y, np.broadcast_to(beta, y.shape))
        assert np.all(dx == 0) and np.all(dgamma == 0)
        np.testing.assert_array_equal(cache.x_hat, 0)


@pytest.mark.parametrize("value", [0.0, 1.0, -3.25, 1e6, 123456.7, 1e30, 1e-30])
def test_constant_row_gives_exact_zero(rng, value):
    for dtype in (np.float32, np.float64):
        x = np.full((3, 777), value, dtype)
        y, cache = layer_norm_forward(x)
        np.testing.assert_array_equal(y, 0)
        np.testing.assert_array_equal(cache.x_hat, 0)
        # rstd = 1/sqrt(0 + eps): a square root and a division, each correctly rounded (2 u64 < 1e-15)
        np.testing.assert_allclose(cache.rstd, 1 / np.sqrt(1e-5), rtol=1e-15)
        dx, _, _ = layer_norm_backward(rng.standard_normal(x.shape).astype(dtype), cache)
        # at a constant row x_hat = 0, so dx = rstd (g - mean g): finite and summing to zero; the sum
        # of D = 777 rounded terms is off by at most D u_out |dx|_1 (u_out <= u32): 777 u32 = 4.6e-5
        assert np.all(np.isfinite(dx)) and np.all(np.abs(dx.sum(-1)) < 1e-3 * np.abs(dx).sum(-1))


def test_float64_huge_constant_row():
    y, cache = layer_norm_forward(np.full((1, 8), 1e307))
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_allclose(cache.rstd, 1 / np.sqrt(1e-5))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_stay_in_their_row(rng, bad):
    x = rng.standard_normal((4, 6))
    x[1, 2] = bad
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    dy = rng.standard_normal(x.shape)
    with np.errstate(all="raise"):  # and no floating-point warnings escape
        y, cache = layer_norm_forward(x, gamma, beta)
        dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    assert np.all(np.isnan(y[1])) and np.all(np.isnan(dx[1]))
    clean = np.delete(x, 1, axis=0)
    y_clean, c_clean = layer_norm_forward(clean, gamma, beta)
    np.testing.assert_array_equal(np.delete(y, 1, axis=0), y_clean)
    np.testing.assert_array_equal(np.delete(dx, 1, axis=0), layer_norm_backward(np.delete(dy, 1, axis=0), c_clean)[0])
    assert np.all(np.isnan(dgamma))  # a sum over rows includes the poisoned row, as in PyTorch
    # dbeta does not involve x; two float64 sums of 4 terms in different orders: within 4 u64 < 1e-7 (rtol)
    np.testing.assert_allclose(dbeta, dy.sum(0))


def test_nan_in_dy_stays_in_its_row(rng):
    x = rng.standard_normal((3, 5))
    dy = rng.standard_normal(x.shape)
    dy[0, 0] = np.nan
    _, cache = layer_norm_forward(x)
    dx, _, _ = layer_norm_backward(dy, cache)
    assert np.all(np.isnan(dx[0])) and np.all(np.isfinite(dx[1:]))


@needs_wide
def test_oracle_two_columns_agrees_with_mpmath(rng):
    for spread in (1.0, 1e4, 1e8, 1e30):
        x = spread * rng.standard_normal(2)
        dy = rng.standard_normal(2)
        _, dx_mp = layer_norm_mpmath(x, None, None, 1e-5, dy, dps=120)
        _, dx_ld, _, _ = layer_norm_longdouble(x[None], None, None, 1e-5, dy[None])
        # long double (u = 2^-64 = 5.4e-20) against 120 digits: a few dozen roundings, far below 1e-17
        assert max_rel_error(dx_ld[0], mp_to_longdouble(dx_mp)) < 1e-17


def test_oracle_agrees_with_mpmath(rng):
    # the oracle is itself checked: 50 digits on a few rows, offsets included
    for offset in (0.0, 1e6, 1e10):
        x = offset + rng.standard_normal(24)
        gamma, beta, dy = rng.standard_normal(24), rng.standard_normal(24), rng.standard_normal(24)
        y_mp, dx_mp = layer_norm_mpmath(x, gamma, beta, 1e-5, dy)
        y_ld, dx_ld, _, _ = layer_norm_longdouble(x[None], gamma, beta, 1e-5, dy[None])
        # D = 24 terms at a condition number up to 1e10 in long double: 24 * 1e10 * 5.4e-20 = 1.3e-8 at
        # worst, but the oracle shifts rows too, leaving a few dozen roundings: 1e-17 is 185 u_ld (1e-14,
        # 90 u64, where long double is float64)
        tol = 1e-17 if LONGDOUBLE_IS_WIDER else 1e-14
        assert max_rel_error(y_ld[0], mp_to_longdouble(y_mp)) < tol
        assert max_rel_error(dx_ld[0], mp_to_longdouble(dx_mp)) < tol


@needs_wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spread", [1e-3, 1.0, 1e3, 1e8])
def test_two_columns(rng, dtype, spread):
    # with D = 2, dx is eps/(var + eps) times the size of the terms of the general formula
    x = (spread * rng.standard_normal((64, 2)) + 5 * spread).astype(dtype)
    gamma, beta = rng.standard_normal(2).astype(dtype), rng.standard_normal(2).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    ey, edx, edg, edb = errors(x, gamma, beta, dy)
    tol_y, tol_g = CONTRACT[dtype]
    assert ey < tol_y and edx < tol_g and edg < tol_g and edb < tol_g, (ey, edx, edg, edb)
