"""The teaching version agrees with the public one where it should, and fails where the book says."""

import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward, reference
from lnlib.oracle import layer_norm_longdouble, max_rel_error


def test_reference_matches_public_on_benign_rows(rng):
    x = rng.standard_normal((3, 5, 64)) * 2 + 0.5
    gamma, beta, dy = rng.standard_normal(64), rng.standard_normal(64), rng.standard_normal(x.shape)
    y, cache = layer_norm_forward(x, gamma, beta)
    yr, cr = reference.forward(x, gamma, beta)
    assert max_rel_error(y, yr) < 1e-14
    for a, b in zip(layer_norm_backward(dy, cache), reference.backward(dy, cr)):
        assert max_rel_error(a, b) < 1e-13


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
    np.testing.assert_allclose(mean, x.mean(axis=-1), rtol=1e-15)
    np.testing.assert_allclose(rstd, cache.rstd, rtol=1e-14)


def test_reference_float32_loses_digits_at_offset_and_public_does_not(rng):
    # the point of chapter 6: a plain float32 mean is off by about offset * 6e-8
    x = (1e5 + rng.standard_normal((16, 1024))).astype(np.float32)
    exact = layer_norm_longdouble(x)
    err_ref = max_rel_error(reference.forward(x)[0], exact)
    err_lnlib = max_rel_error(layer_norm_forward(x)[0], exact)
    assert err_ref > 1e-4
    assert err_lnlib < 2e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.longdouble, np.complex128])
def test_reference_computes_in_input_dtype(rng, dtype):
    x = rng.standard_normal((2, 6)).astype(dtype)
    y, (_, mean, rstd, _) = reference.forward(x)
    assert y.dtype == mean.dtype == rstd.dtype == np.dtype(dtype)
