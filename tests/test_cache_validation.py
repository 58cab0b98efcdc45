"""``layer_norm_backward`` refuses a tampered cache, each check on its own, by the field's name.

``lnlib.layernorm._check_cache`` checks the six fields in order: x (an ndarray, exactly, of float16/32/64
in native byte order, with D >= 1), shifted_mean and rstd (float64 ndarrays of shape ``x.shape[:-1]``),
gamma (None, or a float64 ndarray of shape ``(D,)``), eps (a float, not a bool, finite and positive) and
has_beta (a bool). A check placed after another one is only exercised when every earlier field is
valid, so each case here spoils exactly one field of a cache the forward made, in exactly one way
(its type, ndarray subclass, dtype, byte order, number of axes, length, value), and asserts that the
error is the one for that field and that kind: ``TypeError`` for the wrong kind of thing,
``ValueError`` for a wrong shape or value, the message starting with ``cache.<field>``. Variants the
checks must let through (a NumPy bool or float, no gamma, a float32 x) are accepted.
"""

import re

import numpy as np
import pytest

from lnlib import LayerNormCache, layer_norm_backward, layer_norm_forward

SHAPE = (2, 3, 8)  # two leading axes: shifted_mean and rstd have shape (2, 3)


class Sub(np.ndarray):
    """An ndarray subclass: the cache holds plain ndarrays, and a subclass is refused."""


@pytest.fixture
def made(rng):
    x = rng.standard_normal(SHAPE)
    _, cache = layer_norm_forward(x, rng.standard_normal(8), rng.standard_normal(8))
    return cache, rng.standard_normal(SHAPE)


def _fields(cache):
    """Fresh writable copies of the array fields, so a case can change one and keep the rest valid."""
    return dict(x=np.array(cache.x), shifted_mean=np.array(cache.shifted_mean), rstd=np.array(cache.rstd),
                gamma=np.array(cache.gamma), eps=cache.eps, has_beta=cache.has_beta)


ARRAY_TYPE_CASES = [  # (how, value from the valid array)
    ("list", lambda a: a.tolist()),
    ("subclass", lambda a: a.view(Sub)),
    ("masked array", lambda a: np.ma.masked_array(a)),
    ("float32", lambda a: a.astype(np.float32)),
    ("int64", lambda a: a.astype(np.int64)),
    ("complex128", lambda a: a.astype(np.complex128)),
    ("big-endian float64", lambda a: a.astype(">f8")),
]
ARRAY_TYPE_WORDS = {"list": "got list", "subclass": "got float64", "masked array": "got float64",
                    "float32": "got float32", "int64": "got int64", "complex128": "got complex128",
                    "big-endian float64": "got float64"}


@pytest.mark.parametrize("field", ["shifted_mean", "rstd", "gamma"])
@pytest.mark.parametrize("how, spoil", ARRAY_TYPE_CASES, ids=[c[0] for c in ARRAY_TYPE_CASES])
def test_float64_fields_must_be_native_float64_ndarrays(made, field, how, spoil):
    cache, dy = made
    fields = _fields(cache)
    fields[field] = spoil(fields[field])
    with pytest.raises(TypeError, match=rf"^cache\.{field} must be a float64 numpy\.ndarray as layer_norm_forward "
                                        rf"makes it, {ARRAY_TYPE_WORDS[how]}$"):
        layer_norm_backward(dy, LayerNormCache(**fields))


X_TYPE_CASES = [c for c in ARRAY_TYPE_CASES if c[0] != "float32"] + [
    ("big-endian float32", lambda a: a.astype(">f4")),
    ("longdouble", lambda a: a.astype(np.longdouble)),
]
X_TYPE_WORDS = {**ARRAY_TYPE_WORDS, "big-endian float32": "got float32",
                "longdouble": f"got {np.dtype(np.longdouble).name}"}


@pytest.mark.parametrize("how, spoil", X_TYPE_CASES, ids=[c[0] for c in X_TYPE_CASES])
def test_x_must_be_a_native_float_ndarray(made, how, spoil):
    cache, dy = made
    fields = _fields(cache)
    fields["x"] = spoil(fields["x"])
    with pytest.raises(TypeError, match=r"^cache\.x must be a float16 or float32 or float64 numpy\.ndarray as "
                                        rf"layer_norm_forward makes it, {X_TYPE_WORDS[how]}$"):
        layer_norm_backward(dy, LayerNormCache(**fields))


@pytest.mark.parametrize("shape", [(), (2, 3, 0)], ids=["0-d", "D=0"])
def test_x_must_have_a_row_axis_of_length_at_least_1(made, shape):
    cache, dy = made
    fields = _fields(cache)
    fields["x"] = np.zeros(shape)
    message = f"cache.x must have shape (..., D) with D >= 1, got {shape}"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        layer_norm_backward(dy, LayerNormCache(**fields))


@pytest.mark.parametrize("field", ["shifted_mean", "rstd"])
@pytest.mark.parametrize("shape", [(2, 4), (3, 2), (6,), (2, 3, 1), (1, 2, 3), ()],
                         ids=["length", "transposed", "flattened", "extra axis", "leading axis", "0-d"])
def test_row_statistics_must_have_one_number_per_row(made, field, shape):
    cache, dy = made
    fields = _fields(cache)
    fields[field] = np.ones(shape)
    message = f"cache.{field} must have shape (2, 3) (one per row of cache.x), got {shape}"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        layer_norm_backward(dy, LayerNormCache(**fields))


@pytest.mark.parametrize("shape", [(9,), (7,), (1, 8), (8, 1), ()], ids=["long", "short", "row", "column", "0-d"])
def test_gamma_must_have_shape_d(made, shape):
    cache, dy = made
    fields = _fields(cache)
    fields["gamma"] = np.ones(shape)
    with pytest.raises(ValueError, match=r"^cache\.gamma must have shape \(8,\), got "):
        layer_norm_backward(dy, LayerNormCache(**fields))


NOT_FLOATS = {"str": "1e-5", "None": None, "True": True, "False": False, "np.True_": np.True_, "int": 1,
              "np.int64": np.int64(1), "list": [1e-5], "array": np.array([1e-5]), "complex": 1j}


@pytest.mark.parametrize("eps", list(NOT_FLOATS.values()), ids=list(NOT_FLOATS))
def test_eps_must_be_a_float(made, eps):
    cache, dy = made
    with pytest.raises(TypeError, match=r"^cache\.eps must be a float, got "):
        layer_norm_backward(dy, cache._replace(eps=eps))


@pytest.mark.parametrize("eps", [0.0, -0.0, -1e-5, np.float32(-1.0), float("nan"), float("inf"), -float("inf"),
                                 np.float64("nan")],
                         ids=["0", "-0", "negative", "negative float32", "nan", "inf", "-inf", "np.nan"])
def test_eps_must_be_finite_and_positive(made, eps):
    cache, dy = made
    with pytest.raises(ValueError, match=r"^cache\.eps must be finite and positive, got "):
        layer_norm_backward(dy, cache._replace(eps=eps))


@pytest.mark.parametrize("has_beta", ["yes", 1, 0, 1.0, None, np.int8(1), [True]],
                         ids=["str", "1", "0", "1.0", "None", "np.int8", "list"])
def test_has_beta_must_be_a_bool(made, has_beta):
    cache, dy = made
    with pytest.raises(TypeError, match=r"^cache\.has_beta must be a bool, got "):
        layer_norm_backward(dy, cache._replace(has_beta=has_beta))


def test_a_cache_that_is_not_a_layernormcache_is_refused(made):
    cache, dy = made
    with pytest.raises(TypeError, match=r"^cache must be the LayerNormCache returned by layer_norm_forward, "
                                        r"got tuple$"):
        layer_norm_backward(dy, tuple(cache))


def test_valid_variants_are_accepted(made):
    cache, dy = made
    want = layer_norm_backward(dy, cache)
    same = [
        cache._replace(has_beta=np.True_),  # a NumPy bool is a bool
        cache._replace(eps=np.float64(cache.eps)),  # a NumPy float is a float
        LayerNormCache(**_fields(cache)),  # writable copies of every field
    ]
    for c in same:
        for a, b in zip(layer_norm_backward(dy, c), want):
            assert np.array_equal(a, b)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache._replace(gamma=None, has_beta=False))
    assert dgamma is None and dbeta is None and dx.shape == SHAPE
    assert layer_norm_backward(dy, cache._replace(eps=np.float32(1e-5)))[0].shape == SHAPE
    dx32 = layer_norm_backward(dy, cache._replace(x=cache.x.astype(np.float32)))[0]  # a float32 forward's cache
    assert dx32.dtype == np.float32
