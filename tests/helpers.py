"""Shared test inputs: rows with a chosen offset and spread, and the oracle's answers for them."""

import numpy as np

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import layer_norm_longdouble, max_rel_error


def shifted_rows(rng, shape, offset, dtype, scale=1.0):
    """Rows of N(offset, scale^2), rounded to dtype: condition number about |offset| / scale."""
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)


def errors(x, gamma, beta, dy, eps=1e-5):
    """(y, dx, dgamma, dbeta) errors of lnlib against the long-double oracle on the same values."""
    y, cache = layer_norm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, eps, dy)
    return (
        max_rel_error(y, ry),
        max_rel_error(dx, rdx),
        None if dgamma is None else max_rel_error(dgamma, rdg),
        None if dbeta is None else max_rel_error(dbeta, rdb),
    )


def mp_to_longdouble(values):
    """mpmath numbers to long double without a detour through float64."""
    import mpmath

    return np.array([np.longdouble(mpmath.nstr(v, 30, strip_zeros=False)) for v in values])
