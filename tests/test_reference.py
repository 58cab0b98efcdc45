"""The teaching version agrees with the public one where it should, and fails where the book says."""

import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward, reference
from lnlib.oracle import layer_norm_longdouble, max_rel_error

from .helpers import U32, agree64


def test_reference_matches_public_on_benign_rows(rng):
    x = rng.standard_normal((3, 5, 64)) * 2 + 0.5
    gamma, beta, dy = rng.standard_normal(64), rng.standard_normal(64), rng.standard_normal(x.shape)
    y, cache = layer_norm_forward(x, gamma, beta)
    yr, cr = reference.forward(x, gamma, beta)
    # two float64 evaluations, rows of D = 64 with mean 0.5 and std 2 (kappa ~ 1 for y, ~ 10 for dx)
    assert max_rel_error(y, yr) < agree64(64, kappa=1.0)
    for a, b in zip(layer_norm_backward(dy, cache), reference.backward(dy, cr)):
        assert max_rel_error(a, b) < agree64(64)


def test_reference_cache_is_llmc_minimum(rng):
    x = rng.standard_normal((4, 8))
    _, (cx, mean, rstd, gamma) = reference.forward(x)
    assert cx is x and mean.shape == rstd.shape == (4,) and gamma is None


def test_reference_statistics_are_one_per_row_like_lnlib(rng):
    # one convention: mean and rstd have the shape of x without its last axis, as lnlib's cache.rstd
    x = rng.standard_normal((2, 3, 8))
    _, (_, mean, rstd, _) = reference.forward(x)
    _, cache = layer_norm_forward(x)
    assert mean.shape == rstd.shape == cache.rstd.shape == (2, 3)
    # the same NumPy mean of 8 terms, bit for bit (reference.forward calls x.mean)
    np.testing.assert_array_equal(mean, x.mean(axis=-1))
    # rstd from two routes (lnlib shifts the row first): variance within agree64(8, kappa=1) relative
    # of each other, and its inverse square root halves that
    np.testing.assert_allclose(rstd, cache.rstd, rtol=agree64(8, kappa=1.0))


def test_reference_float32_loses_digits_at_offset_and_public_does_not(rng):
    # the point of chapter 6: a plain float32 mean is off by about offset * 6e-8
    x = (1e5 + rng.standard_normal((16, 1024))).astype(np.float32)
    exact = layer_norm_longdouble(x)
    err_ref = max_rel_error(reference.forward(x)[0], exact)
    err_lnlib = max_rel_error(layer_norm_forward(x)[0], exact)
    # chapter 6: the float32 mean of rows at 1e5 is off by up to depth u32 1e5 ~ 1e-1 of a unit std,
    # the typical error a few 1e-3; lnlib rounds once, within u32 (6e-8) plus float64 work
    assert err_ref > 1e-4
    assert err_lnlib < 4 * U32


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.longdouble, np.complex128])
def test_reference_computes_in_input_dtype(rng, dtype):
    x = rng.standard_normal((2, 6)).astype(dtype)
    y, (_, mean, rstd, _) = reference.forward(x)
    assert y.dtype == mean.dtype == rstd.dtype == np.dtype(dtype)
