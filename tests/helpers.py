"""Shared test inputs: rows with a chosen offset and spread, and the oracle's answers for them."""

import numpy as np

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import layer_norm_longdouble, max_rel_error

U32, U64 = 2.0**-24, 2.0**-53  # unit round-off of float32 and float64

# lnlib's documented accuracy (README), (y, gradients) as max abs error over max abs value against the
# long-double oracle on the same input values. Derived, not measured: lnlib computes in float64 and
# rounds once to the output dtype, so an error is one rounding (u_out, relative to the largest value)
# plus the float64 work, at most about log2(D) u64 for pairwise sums and D u64 for in-order ones
# (chapter 6's models), times the cancellation in dx = rstd (g - mean(g) - x_hat mean(g x_hat)),
# whose terms are of the size rstd |g|. For float32 that is u32 + 65536 u64 kappa < 1e-7 at D <= 65536
# with kappa ~ 10; the contract allows 2e-6 (33 u32) for y and 1e-5 (170 u32) for gradients, room
# for a cancellation factor of 100 in dx. For float64, 1e-12 is 9000 u64 (D u64 kappa with D = 1024,
# kappa ~ 10 is 1.1e-12 for in-order sums, 16 u64 kappa for pairwise) and 1e-11 for gradients.
# The variation matrix (tests/variation_matrix.py) measured at most 0.03 of each of these.
CONTRACT = {np.float32: (2e-6, 1e-5), np.float64: (1e-12, 1e-11)}


def agree64(D, kappa=10.0):
    """How closely two float64 evaluations of one LayerNorm formula must agree (max abs error over max abs value).

    Each is within gamma_D kappa ~ D u64 kappa of the exact value: its sums over a row of D terms add
    in some order (Higham's bound gamma_D = D u / (1 - D u) for a sum in any order, relative to the sum
    of the terms' magnitudes), and kappa is how much larger those magnitudes are than the result,
    at most 1 + |row mean| / std for the statistics and about 10 for dx's three terms on random data.
    Two such evaluations differ by at most twice that. A derived bound, independent of the machine:
    the order of the sums (vector width, BLAS kernel) is exactly what it allows for.
    """
    return 2 * D * kappa * U64


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
