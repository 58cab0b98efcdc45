"""Property tests: any shape, dtype, scale and offset hypothesis finds, against the oracle."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import LONGDOUBLE_IS_WIDER, correctly_rounded, layer_norm_longdouble, max_rel_error

from .helpers import CONTRACT


TOL = CONTRACT  # (y, gradients), derived in tests/helpers.py; float16 must be correctly rounded


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    lead = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    D = draw(st.integers(1, 48))
    max_exp = {np.float16: 3, np.float32: 30, np.float64: 100}[dtype]
    scale = 10.0 ** draw(st.integers(-max_exp, max_exp))
    kappa = draw(st.sampled_from([0.0, 1.0, 1e3, 1e6] if dtype != np.float16 else [0.0, 1.0, 10.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (*lead, D)
    x = (scale * (kappa + rng.standard_normal(shape))).astype(dtype)
    gamma = draw(st.sampled_from([None, "random"]))
    gamma = None if gamma is None else rng.standard_normal(D).astype(dtype)
    beta = draw(st.sampled_from([None, "random"]))
    beta = None if beta is None else rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy


@given(problems())
def test_matches_oracle(p):
    x, gamma, beta, dy = p
    y, cache = layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    assert y.dtype == dx.dtype == x.dtype
    if x.dtype == np.float16:
        for got, exact in ((y, ry), (dx, rdx), (dgamma, rdg), (dbeta, rdb)):
            assert got is None or correctly_rounded(got, exact, np.float16)
        return
    ty, tg = TOL[x.dtype.type]
    if not LONGDOUBLE_IS_WIDER and x.dtype == np.float64:
        ty, tg = 1e-10, 1e-9
    for got, exact, tol in ((y, ry, ty), (dx, rdx, tg), (dgamma, rdg, tg), (dbeta, rdb, tg)):
        # results in the subnormal range cannot carry tol's relative accuracy: there, correct rounding
        assert got is None or max_rel_error(got, exact) <= tol or correctly_rounded(got, exact, x.dtype.type)


@given(problems())
def test_invariants(p):
    x, gamma, beta, dy = p
    _, cache = layer_norm_forward(x, gamma, beta)
    x_hat = cache.x_hat.reshape(-1, x.shape[-1])
    D = x.shape[-1]
    # x_hat has zero mean and (with eps small next to the variance) unit mean square. Its row sum is
    # D float64 terms of size <= sqrt(D): zero within about D sqrt(D) u64 <= 3.7e-14 for D <= 48, far
    # below the bound; |x_hat| <= sqrt(D - 1) exactly (Samuelson), plus a few roundings
    assert np.all(np.abs(x_hat.sum(-1)) <= 1e-12 * D + 1e-12)
    assert np.all(x_hat.max(-1) <= np.sqrt(D) + 1e-9)
    dx, _, _ = layer_norm_backward(dy, cache)
    # dx is orthogonal to the all-ones direction: shifting x leaves y unchanged
    dx64 = dx.astype(np.float64).reshape(-1, D)
    g = dy.astype(np.float64).reshape(-1, D) * (1.0 if gamma is None else gamma.astype(np.float64))
    # rounding dx to its dtype, plus float64 round-off on the terms dx is the difference of
    tol = np.finfo(x.dtype).eps * np.abs(dx64).sum(-1) + 8 * D * 2.0**-52 * cache.rstd.reshape(-1) * np.abs(g).sum(-1)
    assert np.all(np.abs(dx64.sum(-1)) <= tol + np.finfo(x.dtype).smallest_subnormal * D)


@given(st.integers(1, 64), st.floats(-1e6, 1e6), st.floats(1e-3, 1e3))
def test_shift_and_scale_invariance(D, shift, scale):
    # LN(a x + b) = LN(x) for a > 0 when eps is negligible: shifting and scaling the rows changes nothing
    rng = np.random.default_rng(D)
    x = rng.standard_normal((3, D))
    y0, _ = layer_norm_forward(x, eps=1e-300)
    y1, _ = layer_norm_forward(scale * x + shift, eps=1e-300)
    ry1 = layer_norm_longdouble(scale * x + shift, eps=1e-300)
    assert max_rel_error(y1, ry1) <= CONTRACT[np.float64][0] or D == 1
    if D > 1 and abs(shift) / scale < 1e3:
        # rounding scale * x + shift moves each element by up to u64 (|shift| + scale |x|), that is
        # u64 (|shift| / scale + 4) <= 1.1e-13 standard deviations: y moves about as much. 1e-9 is a
        # loose bound far above it (a bug that breaks the invariance moves y by O(1))
        assert max_rel_error(y1, y0) <= 1e-9
