"""lnlib's contract on hostile inputs: each hole once found, then property tests that hunt for more.

The contract (README, docstrings): either a TypeError/ValueError that names the argument, or outputs
that share no memory with the inputs or the cache, are bit-identical whatever the inputs' layout,
byte order or ndarray subclass, match a long-double reference within the documented bound, leave
every input unchanged, and emit no warning (a result beyond the output dtype's range is +-inf).
"""

import fractions
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lnlib import LayerNormCache, layer_norm_backward, layer_norm_forward
from lnlib.oracle import LONGDOUBLE_IS_WIDER, correctly_rounded, layer_norm_longdouble, max_rel_error

from .helpers import CONTRACT, agree64

# --- the six holes, one regression test each -------------------------------------------------------


def test_y_does_not_share_memory_with_the_cache(rng):
    x = rng.standard_normal((3, 8))
    dy = rng.standard_normal((3, 8))
    y, cache = layer_norm_forward(x)  # float64, no gamma, no beta: y is x_hat itself
    before = layer_norm_backward(dy, cache)[0]
    for a in (cache.x, cache.shifted_mean, cache.rstd, x):
        assert not np.shares_memory(y, a)
    y *= 2.0
    assert np.array_equal(layer_norm_backward(dy, cache)[0], before)


def _no_warning(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            return fn(*args)


def test_overflow_of_the_output_dtype_is_inf_without_a_warning(rng):
    x16 = rng.standard_normal((4, 8)).astype(np.float16)
    y, _ = _no_warning(layer_norm_forward, x16, np.full(8, 60000, np.float16))
    assert np.isinf(y).any() and not np.isnan(y).any()

    dy = np.full((70_000, 2), 1.0, np.float16)
    _, cache = layer_norm_forward(rng.standard_normal((70_000, 2)).astype(np.float16), None,
                                  np.zeros(2, np.float16))
    _, _, dbeta = _no_warning(layer_norm_backward, dy, cache)
    assert np.all(dbeta == np.inf)

    x32 = rng.standard_normal((2, 8)).astype(np.float32)
    y, c = _no_warning(layer_norm_forward, x32, np.full(8, 1e300))  # float64 gamma, float32 y
    assert np.isinf(y).all()
    dx, dgamma, _ = _no_warning(layer_norm_backward, np.ones_like(x32), c)
    assert y.dtype == dx.dtype == np.float32


def test_backward_does_not_overflow_in_intermediate_sums(rng):
    x = rng.standard_normal((5, 16))
    dy = 1e308 * rng.uniform(-1, 1, (5, 16))
    _, cache = layer_norm_forward(x)
    dx, _, _ = layer_norm_backward(dy, cache)
    scale = 2.0**-600  # the same problem scaled into a safe range: the answer scales exactly
    dx_small, _, _ = layer_norm_backward(dy * scale, cache)
    assert np.all(np.isfinite(dx))
    # scaling by a power of two is exact, so both runs do the same float64 arithmetic on the same
    # significands unless lnlib's own power-of-two scaling picks another exponent: a few roundings
    # at most (1e-15 is 9 u64), measured exactly equal on every variation of the matrix
    assert max_rel_error(dx * scale, dx_small) < 1e-15

    dx_const, _, _ = layer_norm_backward(np.full((5, 16), 1e308), cache)
    assert np.all(np.isfinite(dx_const))
    assert np.max(np.abs(dx_const)) <= np.max(cache.rstd) * 16 * np.finfo(float).eps * 1e308


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="needs a long double with a wider exponent range")
def test_dgamma_and_dbeta_do_not_overflow_in_intermediate_sums(rng):
    x = rng.standard_normal((4, 8))
    dy = np.concatenate([np.full((2, 8), 1e308), np.full((2, 8), -1e308)])
    _, cache = layer_norm_forward(x, np.ones(8), np.zeros(8))
    _, dgamma, dbeta = layer_norm_backward(dy, cache)
    assert np.array_equal(dbeta, np.zeros(8))  # 2e308 - 2e308: the partial sums must not overflow
    exact = layer_norm_longdouble(x, np.ones(8), np.zeros(8), 1e-5, dy)[2]
    fits = np.abs(exact) <= np.finfo(np.float64).max
    # dgamma sums 4 rows (after scaling by a power of two): float64 against long double for 4 terms
    # of products, within 4 u64 (4.4e-16) times a cancellation of at most 2 here
    assert fits.any() and max_rel_error(dgamma[fits], exact[fits]) < 1e-15
    assert np.all(np.isinf(dgamma[~fits]) & (np.sign(dgamma[~fits]) == np.sign(exact[~fits])))


@pytest.mark.parametrize("eps", [10**400, fractions.Fraction(10**400), -(10**400)], ids=["int", "Fraction", "negative int"])
def test_eps_too_large_for_float64_is_a_value_error(eps):
    with pytest.raises(ValueError, match="^eps"):
        layer_norm_forward(np.ones((1, 4)), eps=eps)


def test_eps_that_rounds_to_zero_says_so():
    with pytest.raises(ValueError, match="^eps.*positive but rounds to 0.0"):
        layer_norm_forward(np.ones((1, 4)), eps=fractions.Fraction(1, 10**400))


@pytest.mark.parametrize("name", ["x", "gamma", "beta", "dy"])
def test_masked_arrays_are_refused(rng, name):
    x = rng.standard_normal((2, 4))
    args = {"x": x, "gamma": np.ones(4), "beta": np.zeros(4)}
    masked = lambda a: np.ma.masked_array(a, mask=np.zeros(a.shape, bool))
    if name == "dy":
        _, cache = layer_norm_forward(**args)
        with pytest.raises(TypeError, match="^dy .*masked"):
            layer_norm_backward(masked(x), cache)
    else:
        args[name] = masked(args[name])
        with pytest.raises(TypeError, match=f"^{name} .*masked"):
            layer_norm_forward(**args)


class Loud(np.ndarray):
    """A subclass whose ufunc hook must never run inside lnlib."""

    def __array_ufunc__(self, *args, **kwargs):
        raise AssertionError("a subclass hook ran inside lnlib")


def test_subclasses_are_plain_arrays_inside(rng):
    x, gamma, beta, dy = (rng.standard_normal(s) for s in ((3, 8), 8, 8, (3, 8)))
    y0, c0 = layer_norm_forward(x, gamma, beta)
    y1, c1 = layer_norm_forward(x.view(Loud), gamma.view(Loud), beta.view(Loud))
    assert type(y1) is np.ndarray and np.array_equal(y0, y1)
    for a, b in zip(layer_norm_backward(dy, c0), layer_norm_backward(dy.view(Loud), c1)):
        assert type(b) is np.ndarray and np.array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # numpy's own warning about matrix
        as_matrix = np.asmatrix(x)
    y2, _ = layer_norm_forward(as_matrix)
    assert type(y2) is np.ndarray and np.array_equal(y2, layer_norm_forward(x)[0])


def _tampered(cache, **fields):
    return cache._replace(**fields)


@pytest.mark.parametrize(
    "fields, exc",
    [
        (dict(x="abc"), TypeError),
        (dict(x=np.zeros((3, 8), np.int64)), TypeError),
        (dict(x=np.zeros((3, 8), ">f8")), TypeError),
        (dict(x=np.zeros((3, 0))), ValueError),
        (dict(shifted_mean=np.ones(3, np.float32)), TypeError),
        (dict(shifted_mean=np.ones(4)), ValueError),
        (dict(rstd=[1.0, 1.0, 1.0]), TypeError),
        (dict(rstd=np.ones(4)), ValueError),
        (dict(gamma=np.ones(9)), ValueError),
        (dict(gamma=np.ones(8, np.int32)), TypeError),
        (dict(eps="1e-5"), TypeError),
        (dict(eps=-1.0), ValueError),
        (dict(eps=True), TypeError),
        (dict(has_beta="yes"), TypeError),
    ],
)
def test_a_tampered_cache_is_refused_by_name(rng, fields, exc):
    _, cache = layer_norm_forward(rng.standard_normal((3, 8)), np.ones(8), np.zeros(8))
    with pytest.raises(exc, match="^cache"):
        layer_norm_backward(rng.standard_normal((3, 8)), _tampered(cache, **fields))


def test_a_hand_built_cache_with_the_right_fields_works(rng):
    x, dy = rng.standard_normal((2, 8)), rng.standard_normal((2, 8))
    _, c = layer_norm_forward(x)
    rebuilt = LayerNormCache(np.array(c.x), np.array(c.shifted_mean), np.array(c.rstd), None, 1e-5, False)
    assert np.array_equal(layer_norm_backward(dy, rebuilt)[0], layer_norm_backward(dy, c)[0])


# --- gaps the planted bugs showed ---------------------------------------------------------------


def test_d2_backward_on_constant_and_nearly_constant_rows_matches_the_oracle(rng):
    x = np.array([[3.0, 3.0], [1.0, 1.0 + 2**-40], [-2.0, 5.0], [7.0, 7.0]])
    gamma, dy = rng.standard_normal(2), rng.standard_normal((4, 2))
    _, cache = layer_norm_forward(x, gamma)
    dx = layer_norm_backward(dy, cache)[0]
    rdx = layer_norm_longdouble(x, gamma, None, 1e-5, dy)[1]
    for row in range(4):
        # row by row, so a nearly constant row (var ~ 2^-82, far below eps) is judged on its own:
        # lnlib's float64 contract
        assert max_rel_error(dx[row], rdx[row]) < CONTRACT[np.float64][1] / 10, row


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_correctly_rounded_allows_exactly_one_subnormal_of_slack(dtype):
    # results in the subnormal range are judged to one smallest subnormal (README), and no more
    tiny = np.finfo(dtype).smallest_subnormal
    assert correctly_rounded(np.array([tiny], dtype), np.zeros(1), dtype)
    assert not correctly_rounded(np.array([2 * tiny], dtype), np.zeros(1), dtype)


def test_correctly_rounded_rejects_one_unit_in_the_last_place():
    exact = np.array([1.0 / 3.0, 2.0 / 3.0, 1e-3], dtype=np.longdouble)
    for dtype in (np.float16, np.float32, np.float64):
        rounded = exact.astype(dtype)
        assert correctly_rounded(rounded, exact, dtype)
        off = np.nextafter(rounded, np.array(np.inf, dtype))
        assert not correctly_rounded(off, exact, dtype), dtype


# --- the contract over generated inputs ----------------------------------------------------------

TOL = CONTRACT  # (y, gradients): the documented bound, derived in tests/helpers.py


def _layouts(a, draw):
    """The same values in another memory layout, byte order or subclass (never a copy of the values)."""
    kind = draw(st.sampled_from(["C", "F", "strided", "reversed", "swapped", "subclass"]))
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if kind == "reversed":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if kind == "swapped":
        return a.astype(a.dtype.newbyteorder())
    if kind == "subclass":
        return a.view(Loud)
    return a


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    rows = draw(st.lists(st.integers(0, 3), min_size=0, max_size=2))
    D = draw(st.integers(1, 12))
    info = np.finfo(dtype)
    scale_exp = draw(st.sampled_from(["subnormal", "tiny", "one", "huge", "near_max"]))
    scale = {
        "subnormal": float(info.smallest_subnormal) * 64,
        "tiny": float(info.tiny) * 4,
        "one": 1.0,
        "huge": float(info.max) ** 0.5,
        "near_max": float(info.max) / 8,
    }[scale_exp]
    kappa = draw(st.sampled_from([0.0, 1.0, 100.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (*rows, D)
    with np.errstate(all="ignore"):
        x = (scale * (kappa + rng.uniform(-1, 1, shape)) / (1 + kappa)).astype(dtype)
    special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
    if special is not None and x.size:
        x.flat[draw(st.integers(0, x.size - 1))] = special
    gamma = draw(st.sampled_from([None, "random"]))
    gamma = None if gamma is None else rng.uniform(0.5, 2, D).astype(dtype)
    beta = draw(st.sampled_from([None, "random"]))
    beta = None if beta is None else rng.uniform(-1, 1, D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy, draw


@given(problems())
def test_contract_holds_on_generated_inputs(p):
    x, gamma, beta, dy, draw = p
    inputs = [a for a in (x, gamma, beta, dy) if a is not None]
    before = [(a.tobytes(), a.dtype, a.shape) for a in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (e) no warning
        with np.errstate(all="raise"):
            y, cache = layer_norm_forward(x, gamma, beta)
            dx, dgamma, dbeta = layer_norm_backward(dy, cache)
            # (b) bit-identical whatever the layout, byte order or subclass of every argument
            xl, dyl = _layouts(x, draw), _layouts(dy, draw)
            gl = None if gamma is None else _layouts(gamma, draw)
            bl = None if beta is None else _layouts(beta, draw)
            y2, cache2 = layer_norm_forward(xl, gl, bl)
            got2 = layer_norm_backward(dyl, cache2)
    for a, b in zip((y, dx, dgamma, dbeta), (y2, *got2)):
        assert (a is None and b is None) or (type(b) is np.ndarray and a.tobytes() == b.tobytes())
    # (d) inputs unchanged
    assert [(a.tobytes(), a.dtype, a.shape) for a in inputs] == before
    # (a) no output shares memory with an input or with the cache
    outputs = [a for a in (y, dx, dgamma, dbeta) if a is not None]
    held = inputs + [a for a in (cache.x, cache.shifted_mean, cache.rstd, cache.gamma) if a is not None]
    for o in outputs:
        assert not any(np.shares_memory(o, h) for h in held)
    for i, o in enumerate(outputs):
        assert not any(np.shares_memory(o, q) for q in outputs[i + 1:])
    # (c) within the documented bound of the long-double reference, row by row where finite
    with np.errstate(all="ignore"):
        ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    finite_rows = np.all(np.isfinite(x), axis=-1)
    ty, tg = TOL.get(x.dtype.type, (None, None))
    checks = [(y[finite_rows], ry[finite_rows], ty), (dx[finite_rows], rdx[finite_rows], tg)]
    if finite_rows.all():
        checks += [(dgamma, rdg, tg), (dbeta, rdb, tg)]
    for got, exact, tol in checks:
        if got is None or got.size == 0:
            continue
        exact = np.asarray(exact, np.longdouble)
        representable = np.abs(exact) <= np.finfo(x.dtype).max
        if not representable.all():  # beyond the dtype's range: inf of the right sign
            assert np.all(np.isinf(got[~representable]))
            assert np.all(np.sign(got[~representable]) == np.sign(exact[~representable]))
            got, exact = got[representable], exact[representable]
        if x.dtype == np.float16:
            assert correctly_rounded(got, exact, np.float16)
            continue
        if not LONGDOUBLE_IS_WIDER and x.dtype == np.float64:
            tol *= 100
        # Results in the subnormal range carry absolute, not relative, accuracy (documented): a few
        # units of the smallest subnormal per term summed, scaled by the size of dy and gamma.
        terms = x.shape[-1] + (x.size // x.shape[-1])
        size = max(1.0, float(np.max(np.abs(dy), initial=0.0))) * (1.0 if gamma is None else max(1.0, float(np.max(gamma))))
        slack = 4 * terms * size * float(np.finfo(x.dtype).smallest_subnormal)
        abs_err = float(np.max(np.abs(got.astype(np.longdouble) - exact)))
        assert max_rel_error(got, exact) <= tol or correctly_rounded(got, exact, x.dtype.type) or abs_err <= slack
    # NaN and Inf stay in their row: that row of y and dx is NaN, every other row is as computed above
    assert np.all(np.isnan(y[~finite_rows])) and np.all(np.isnan(dx[~finite_rows]))


def test_check_gradients_uses_the_eps_it_is_given(rng):
    from lnlib.gradcheck import check_gradients

    x = 0.3 * rng.standard_normal((3, 6))  # variance near eps = 0.5, so eps matters
    gamma, beta, dy = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal((3, 6))
    # against the complex step, rows of D = 6: two float64 evaluations (tests/helpers.py)
    assert check_gradients(layer_norm_forward, layer_norm_backward, x, gamma, beta, dy, eps=0.5).worst() < agree64(6)

    def forward_ignoring_eps(x, gamma=None, beta=None, eps=1e-5):
        return layer_norm_forward(x, gamma, beta, 1e-5)

    report = check_gradients(forward_ignoring_eps, layer_norm_backward, x, gamma, beta, dy, eps=0.5)
    # eps = 0.5 against a variance of about 0.09 changes y by a factor sqrt(0.59 / 0.09): O(1)
    assert report.worst() > 1e-3
