"""The contract at every magnitude: each decade from the smallest subnormal to the overflow threshold.

``tests/test_contract.py`` draws the rows' magnitude from five named values (64 subnormals, 4 times the
smallest normal, 1, sqrt(max), max/8), and under the CI profile (derandomised, 60 examples) a given
dtype, magnitude and offset may not be drawn at all: a magnitude bug that the dev profile found in two
runs of three got through CI. Here the magnitude is an explicit band, and every band is an
``@example``, which hypothesis runs under every profile before it generates anything:

* every power of ten whose rows the dtype can hold, from the smallest subnormal to the largest
  finite value (float16: 12 decades, float32: 83, float64: 632),
* and the contract strategy's five named magnitudes,

for rows about zero (a square overflows first) and at an offset of 100 spreads (cancellation), and
rows of two columns (the backward's own D = 2 formula, whose x_hat . x_hat underflowed for rows of
1e-160 until it was scaled). The generated examples then vary the offset, shape, affine parameters and seed within the same bands.
Each result is held to the long-double oracle on the same input values with the contract's bounds,
and no call may warn.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lnlib import layer_norm_backward, layer_norm_forward
from lnlib.oracle import LONGDOUBLE_IS_WIDER, correctly_rounded, layer_norm_longdouble, max_rel_error

# The documented bounds (README: float32 within 2e-6 for y and 1e-5 for gradients; float64 as in
# tests/test_contract.py), as max abs error over max abs value; float16 results are correctly rounded.
TOL = {np.float32: (2e-6, 1e-5), np.float64: (1e-12, 1e-11)}
DTYPES = (np.float16, np.float32, np.float64)


def _bands(dtype):
    """The scales of one dtype's rows: every power of ten it can hold, and the five named ones."""
    info = np.finfo(dtype)
    low = math.ceil(math.log10(float(info.smallest_subnormal)))
    high = math.floor(math.log10(float(info.max)))
    decades = [float(f"1e{e}") for e in range(low, high + 1)]  # correctly rounded, subnormals too
    named = [float(info.smallest_subnormal) * 64, float(info.tiny) * 4, float(info.tiny), 1.0,
             float(info.max) ** 0.5, float(info.max) / 8]
    return [(dtype, s) for s in decades + named]


BANDS = [b for dtype in DTYPES for b in _bands(dtype)]


@pytest.mark.parametrize("dtype, low, high", [(np.float16, -7, 4), (np.float32, -44, 38), (np.float64, -323, 308)])
def test_the_bands_span_subnormal_to_overflow(dtype, low, high):
    info = np.finfo(dtype)
    scales = {s for d, s in BANDS if d is dtype}
    assert {float(f"1e{e}") for e in range(low, high + 1)} <= scales  # no decade left out
    assert float(f"1e{low - 1}") < float(info.smallest_subnormal) <= float(f"1e{low}")
    assert float(f"1e{high}") <= float(info.max) < float(f"1e{high + 1}")
    assert {float(info.max) ** 0.5, float(info.max) / 8, float(info.tiny) * 4} <= scales


def _close(got, exact, dtype, tol, slack):
    exact = np.asarray(exact, np.longdouble)
    representable = np.abs(exact) <= np.finfo(dtype).max
    if not representable.all():  # beyond the dtype's range: inf of the right sign
        assert np.all(np.isinf(got[~representable]))
        assert np.all(np.sign(got[~representable]) == np.sign(exact[~representable]))
        got, exact = got[representable], exact[representable]
    if got.size == 0:
        return True
    if dtype == np.float16:
        return correctly_rounded(got, exact, np.float16)
    abs_err = float(np.max(np.abs(got.astype(np.longdouble) - exact)))
    return max_rel_error(got, exact) <= tol or correctly_rounded(got, exact, dtype) or abs_err <= slack


def _explicit(f):
    # every band, about zero and at an offset, and two columns about zero (D = 2 has its own dx
    # formula): run under every hypothesis profile
    for i, band in enumerate(BANDS):
        for kappa in (0.0, 100.0):
            f = example(band=band, kappa=kappa, D=7, rows=3, seed=i, affine=True)(f)
        f = example(band=band, kappa=0.0, D=2, rows=4, seed=i, affine=False)(f)
    return f


@given(
    band=st.sampled_from(BANDS),
    kappa=st.sampled_from([0.0, 1.0, 100.0]),
    D=st.integers(1, 12),
    rows=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    affine=st.booleans(),
)
@_explicit
def test_contract_in_every_magnitude_band(band, kappa, D, rows, seed, affine):
    dtype, scale = band
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        x = (scale * ((kappa + rng.uniform(-1, 1, (rows, D))) / (1 + kappa))).astype(dtype)
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= scale * (1 + 2 * np.finfo(dtype).eps)
    gamma = rng.uniform(0.5, 2, D).astype(dtype) if affine else None
    beta = rng.uniform(-1, 1, D).astype(dtype) if affine else None
    dy = rng.standard_normal(x.shape).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y, cache = layer_norm_forward(x, gamma, beta)
            dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    assert y.dtype == dx.dtype == dtype
    with np.errstate(all="ignore"):
        ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    ty, tg = TOL.get(dtype, (None, None))
    if dtype == np.float64 and not LONGDOUBLE_IS_WIDER:
        ty, tg = 100 * ty, 100 * tg
    # in the subnormal range the accuracy is absolute (README): a few units of the smallest subnormal
    # per term summed, times the size of dy and gamma, as in tests/test_contract.py
    terms = D + rows
    size = max(1.0, float(np.max(np.abs(dy)))) * (1.0 if gamma is None else 2.0)
    slack = 4 * terms * size * float(np.finfo(dtype).smallest_subnormal)
    assert _close(y, ry, dtype, ty, slack), "y"
    assert _close(dx, rdx, dtype, tg, slack), "dx"
    for got, exact, name in ((dgamma, rdg, "dgamma"), (dbeta, rdb, "dbeta")):
        assert got is None or _close(got, exact, dtype, tg, slack), name
