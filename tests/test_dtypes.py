"""Which dtypes lnlib takes and which it gives back: a ``dy`` of another float dtype than ``x``, and
``np.longdouble``.

The contract (README, ``layer_norm_backward``'s docstring): ``dy`` may be float16, float32 or
float64 whatever ``x`` was; ``dx``, ``dgamma`` and ``dbeta`` take the forward's dtype (``cache.dtype``),
and ``dy``'s values are used as they are (the work is in float64), never first rounded to ``x``'s
dtype. Only float16, float32 and float64 are accepted: ``np.longdouble`` (float128 on x86-64), like
any other dtype, is a TypeError naming the argument, in the forward, the backward and a cache.
"""

import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import LONGDOUBLE_IS_WIDER, correctly_rounded, layer_norm_longdouble
from lnlib.variance import numpy_sum_depth

FLOATS = [np.float16, np.float32, np.float64]
U64 = 2.0**-53
LONG = np.dtype(np.longdouble).name  # 'float128' on x86-64

needs_wide = pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="np.longdouble is float64 on this platform")


def _within_model(x, gamma, dy, cache, dx, dgamma, dbeta, exact):
    """lnlib's gradients against the exact ones, within the rounding-error model of its float64 work.

    Per row, with g = gamma dy and terms of size rstd |g| (Higham's bound for a D-term sum or dot
    product in any order, D u sum|a_i b_i|, and a few roundings per operation):

    * dx = rstd (g - mean g - x_hat mean(g x_hat)):
      ``|err| <= u_out |dx| + rstd (2 D + 30 + h) u max|g| (1 + max|x_hat|**2)``, h = numpy_sum_depth(D)
      (the two means' sums, D u each, x_hat's own error of (h + 20) u, the subtractions, the final
      rounding);
    * dgamma = sum over rows of dy x_hat: ``(M + D + 20) u sum|dy x_hat| + u_out |dgamma|``;
    * dbeta = sum over rows of dy: ``(M + 2) u sum|dy| + u_out |dbeta|``.

    u_out is the output dtype's unit roundoff (the result is rounded once). float16 outputs are
    instead required to be correctly rounded, as everywhere in the suite.
    """
    _, rdx, rdg, rdb = exact
    out = x.dtype
    if out == np.float16:
        for got, want in ((dx, rdx), (dgamma, rdg), (dbeta, rdb)):
            assert got is None or correctly_rounded(got, want, np.float16)
        return
    u_out = float(np.finfo(out).eps) / 2
    D = x.shape[-1]
    dy64 = dy.astype(np.float64).reshape(-1, D)
    g = dy64 * (1.0 if gamma is None else gamma.astype(np.float64))
    x_hat = np.abs(cache.x_hat.reshape(-1, D))
    rstd = cache.rstd.reshape(-1, 1)
    M = dy64.shape[0]
    L = np.longdouble
    bound_dx = u_out * np.abs(rdx.reshape(-1, D)) + rstd * (2 * D + 30 + numpy_sum_depth(D)) * U64 * (
        np.max(np.abs(g), axis=1, keepdims=True) * (1 + np.max(x_hat, axis=1, keepdims=True) ** 2))
    assert np.all(np.abs(dx.reshape(-1, D).astype(L) - rdx.reshape(-1, D)) <= bound_dx), "dx"
    bound_dg = (M + D + 20) * U64 * np.sum(np.abs(dy64) * x_hat, axis=0) + u_out * np.abs(rdg)
    assert dgamma is None or np.all(np.abs(dgamma.astype(L) - rdg) <= bound_dg), "dgamma"
    bound_db = (M + 2) * U64 * np.sum(np.abs(dy64), axis=0) + u_out * np.abs(rdb)
    assert dbeta is None or np.all(np.abs(dbeta.astype(L) - rdb) <= bound_db), "dbeta"


@needs_wide
@pytest.mark.parametrize("dy_dtype", FLOATS)
@pytest.mark.parametrize("x_dtype", FLOATS)
def test_dy_of_any_float_dtype_gives_gradients_in_xs_dtype(rng, x_dtype, dy_dtype):
    x = (rng.standard_normal((2, 5, 24)) * 3 + 10).astype(x_dtype)
    gamma, beta = rng.uniform(0.5, 2, 24).astype(x_dtype), rng.standard_normal(24).astype(x_dtype)
    dy = rng.standard_normal(x.shape).astype(dy_dtype)
    _, cache = layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == cache.dtype == x_dtype
    assert dx.shape == x.shape and dgamma.shape == dbeta.shape == (24,)
    exact = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)  # dy's own values, converted exactly
    _within_model(x, gamma, dy, cache, dx, dgamma, dbeta, exact)


@needs_wide
@pytest.mark.parametrize("x_dtype, dy_dtype, delta", [(np.float32, np.float64, 1e-8), (np.float16, np.float32, 1e-5),
                                                      (np.float16, np.float64, 1e-5)])
def test_dy_is_not_rounded_to_xs_dtype_first(rng, x_dtype, dy_dtype, delta):
    # g = gamma dy almost in the span of 1 and x_hat, which the backward projects out: dx is of the
    # size rstd * delta * |g|, far below what rounding dy to x's dtype first would leave (u_x |g|)
    D = 16
    x = (rng.standard_normal((6, D)) * 3 + 10).astype(x_dtype)
    gamma = rng.uniform(0.5, 2, D).astype(x_dtype)
    _, cache = layer_norm_forward(x, gamma)
    a, b = rng.standard_normal((6, 1)), rng.standard_normal((6, 1))
    g = a + b * cache.x_hat + delta * rng.standard_normal((6, D))
    dy = (g / gamma.astype(np.float64)).astype(dy_dtype)
    assert not np.array_equal(dy.astype(x_dtype).astype(dy_dtype), dy)  # x's dtype cannot hold dy
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    assert dbeta is None and dx.dtype == dgamma.dtype == x_dtype
    _within_model(x, gamma, dy, cache, dx, dgamma, None, layer_norm_longdouble(x, gamma, None, 1e-5, dy))


@needs_wide
def test_float64_dy_beyond_float32_range_gives_inf_of_the_right_sign(rng):
    # the exact dx is far beyond float32's range: +-inf of its sign (README), never NaN, no warning
    x = rng.standard_normal((4, 16)).astype(np.float32)
    dy = 1e308 * rng.uniform(-1, 1, (4, 16))
    _, cache = layer_norm_forward(x, None, np.zeros(16, np.float32))
    with np.errstate(all="raise"):
        dx, _, dbeta = layer_norm_backward(dy, cache)
    exact = layer_norm_longdouble(x, None, None, 1e-5, dy)
    big = np.abs(exact[1]) > np.finfo(np.float32).max
    assert big.mean() > 0.9 and not np.isnan(dx).any()
    assert np.all(np.isinf(dx[big])) and np.all(np.sign(dx[big]) == np.sign(exact[1][big]))
    assert dx.dtype == dbeta.dtype == np.float32
    assert np.all(np.isinf(dbeta)) and np.all(np.sign(dbeta) == np.sign(exact[3]))  # 4 rows of ~1e308


# --- np.longdouble ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x", "gamma", "beta"])
def test_longdouble_is_refused_by_the_forward(rng, name):
    args = {"x": rng.standard_normal((2, 4)), "gamma": np.ones(4), "beta": np.zeros(4)}
    args[name] = args[name].astype(np.longdouble)
    with pytest.raises(TypeError, match=rf"^{name} must have a real floating dtype \(float16, float32 or float64\), "
                                        rf"got {LONG}$"):
        layer_norm_forward(**args)


def test_longdouble_is_refused_by_the_backward(rng):
    x = rng.standard_normal((2, 4))
    _, cache = layer_norm_forward(x)
    with pytest.raises(TypeError, match=rf"^dy must have a real floating dtype .*got {LONG}$"):
        layer_norm_backward(x.astype(np.longdouble), cache)
    for field in ("x", "shifted_mean", "rstd"):
        tampered = cache._replace(**{field: getattr(cache, field).astype(np.longdouble)})
        with pytest.raises(TypeError, match=rf"^cache\.{field} must be a .*numpy\.ndarray.*got {LONG}$"):
            layer_norm_backward(x, tampered)
