"""The public contract: shapes, dtypes, None for no affine, the cache, and what is never modified."""

import numpy as np
import pytest

from lnlib import LayerNormCache, layer_norm_backward, layer_norm_forward
from lnlib.oracle import layer_norm_longdouble

DTYPES = [np.float16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 7), (2, 1, 3, 1)])
def test_shapes_and_dtypes(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    D = shape[-1]
    gamma, beta = rng.standard_normal(D).astype(dtype), rng.standard_normal(D).astype(dtype)
    y, cache = layer_norm_forward(x, gamma, beta)
    assert y.shape == x.shape and y.dtype == x.dtype and y.flags.c_contiguous
    dx, dgamma, dbeta = layer_norm_backward(rng.standard_normal(shape).astype(dtype), cache)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert dgamma.shape == (D,) and dgamma.dtype == x.dtype
    assert dbeta.shape == (D,) and dbeta.dtype == x.dtype


@pytest.mark.parametrize("with_gamma,with_beta", [(False, False), (True, False), (False, True), (True, True)])
def test_none_affine_gives_none_gradients(rng, with_gamma, with_beta):
    x = rng.standard_normal((4, 5))
    gamma = rng.standard_normal(5) if with_gamma else None
    beta = rng.standard_normal(5) if with_beta else None
    y, cache = layer_norm_forward(x, gamma, beta)
    dy = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    assert (dgamma is None) != with_gamma
    assert (dbeta is None) != with_beta
    # None means the identity: ones and zeros give the same y and dx
    y1, c1 = layer_norm_forward(x, gamma if with_gamma else np.ones(5), beta if with_beta else np.zeros(5))
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(dx, layer_norm_backward(dy, c1)[0])


def test_param_gradients_sum_over_every_leading_axis(rng):
    x = rng.standard_normal((2, 3, 4, 6))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    dy = rng.standard_normal(x.shape)
    _, cache = layer_norm_forward(x, gamma, beta)
    _, dgamma, dbeta = layer_norm_backward(dy, cache)
    _, cache2 = layer_norm_forward(x.reshape(-1, 6), gamma, beta)
    _, dgamma2, dbeta2 = layer_norm_backward(dy.reshape(-1, 6), cache2)
    np.testing.assert_array_equal(dgamma, dgamma2)
    # 24 rows summed in two orders: within 24 u64 sum|dy| of each other, relative to a sum of random
    # signs about sqrt(24) smaller than sum|dy|; 1e-13 is 450 u64 (measured at most 0.01 of it)
    np.testing.assert_allclose(dbeta, dy.sum(axis=(0, 1, 2)), rtol=1e-13)


def test_cache_is_minimal_and_typed(rng):
    M, D = 12, 32
    x = rng.standard_normal((3, 4, D)).astype(np.float32)
    _, cache = layer_norm_forward(x, np.ones(D, np.float32), np.zeros(D, np.float32))
    assert isinstance(cache, LayerNormCache)
    assert set(cache._fields) == {"x", "shifted_mean", "rstd", "gamma", "eps", "has_beta"}
    assert cache.x.dtype == np.float32 and cache.x.shape == x.shape and np.array_equal(cache.x, x)
    assert cache.shifted_mean.shape == cache.rstd.shape == (3, 4)
    assert cache.shifted_mean.dtype == cache.rstd.dtype == np.float64 and cache.dtype == np.float32
    # the input's own bytes, 16 a row, and gamma: at most input + 16 B/row + parameters
    assert cache.nbytes == x.nbytes + M * 16 + D * 8
    assert cache.x_hat.dtype == np.float64 and cache.x_hat.shape == x.shape


def test_cache_is_read_only(rng):
    _, cache = layer_norm_forward(rng.standard_normal((2, 3)), rng.standard_normal(3))
    for a in (cache.x, cache.shifted_mean, cache.rstd, cache.gamma):
        with pytest.raises(ValueError):
            a[...] = 0


def test_cache_does_not_alias_inputs(rng):
    x, gamma = rng.standard_normal((3, 5)), rng.standard_normal(5)
    _, cache = layer_norm_forward(x, gamma)
    assert not np.shares_memory(cache.gamma, gamma)
    assert not np.shares_memory(cache.x, x)


def test_inputs_never_modified(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    gamma, beta = rng.standard_normal(9), rng.standard_normal(9)
    dy = rng.standard_normal((4, 9))
    copies = [a.copy() for a in (x, gamma, beta, dy)]
    y, cache = layer_norm_forward(x, gamma, beta)
    held = [a.copy() for a in (cache.x, cache.shifted_mean, cache.rstd)]
    layer_norm_backward(dy, cache)
    for a, c in zip((x, gamma, beta, dy), copies):
        np.testing.assert_array_equal(a, c)
    for a, c in zip((cache.x, cache.shifted_mean, cache.rstd), held):
        np.testing.assert_array_equal(a, c)


def test_backward_twice_and_after_changing_y_or_inputs(rng):
    x = rng.standard_normal((5, 16))
    gamma, beta = rng.standard_normal(16), rng.standard_normal(16)
    dy = rng.standard_normal(x.shape)
    y, cache = layer_norm_forward(x, gamma, beta)
    first = layer_norm_backward(dy, cache)
    y[...] = 0.0  # the caller owns y
    x[...] = 1.0  # ... and x
    gamma[...] = 7.0  # an optimiser stepping gamma in place before backward
    second = layer_norm_backward(dy, cache)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["fortran", "strided", "transposed", "negative"])
def test_layout_gives_identical_results(rng, layout):
    base = rng.standard_normal((6, 10))
    dy = rng.standard_normal((6, 10))
    if layout == "fortran":
        x = np.asfortranarray(base)
    elif layout == "strided":
        big = np.zeros((12, 20))
        big[::2, ::2] = base
        x = big[::2, ::2]
    elif layout == "transposed":
        x = np.ascontiguousarray(base.T).T
    else:
        x = base[::-1, ::-1][::-1, ::-1]
    assert not x.flags.c_contiguous or layout == "negative"
    y0, c0 = layer_norm_forward(base)
    y1, c1 = layer_norm_forward(x)
    np.testing.assert_array_equal(y0, y1)
    dyF = np.asfortranarray(dy)
    for a, b in zip(layer_norm_backward(dy, c0)[:1], layer_norm_backward(dyF, c1)[:1]):
        np.testing.assert_array_equal(a, b)


def test_zero_rows(rng):
    x = np.zeros((0, 4), np.float32)
    y, cache = layer_norm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32))
    dx, dgamma, dbeta = layer_norm_backward(np.zeros((0, 4), np.float32), cache)
    assert y.shape == dx.shape == (0, 4)
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 0)


def test_deterministic_bitwise(rng):
    x = rng.standard_normal((257, 33)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    g = rng.standard_normal(33).astype(np.float32)
    runs = [layer_norm_backward(dy, layer_norm_forward(x, g, g)[1]) for _ in range(3)]
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert a.tobytes() == b.tobytes()


def test_eps_is_used(rng):
    x = rng.standard_normal((2, 8)) * 1e-3
    for eps in (1e-5, 1e-2, 3):
        y, _ = layer_norm_forward(x, eps=eps)
        # float64 against long double, rows of D = 8: half of agree64(8, kappa=1) = 1.8e-15 relative
        # to max|y|, which is below 3 (atol covers the smallest elements); eps = 1e-2 against
        # var ~ 1e-6 shrinks y to ~1e-2, still far above atol: eps ignored would be an O(1) error
        np.testing.assert_allclose(y, layer_norm_longdouble(x, eps=eps).astype(np.float64), rtol=1e-14, atol=1e-15)
    # numpy scalars and ints are accepted
    layer_norm_forward(x, eps=np.float32(1e-5))
    layer_norm_forward(x, eps=1)
