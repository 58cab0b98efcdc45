"""``gradcheck``'s default central-difference step for each dtype, and the accuracy it gives.

``lnlib.gradcheck.default_step`` documents ``h = u**(1/3) max(1, |a|)`` with u the unit roundoff of
*a's own precision*: 2**-11 (float16), 2**-24 (float32), 2**-53 (float64), so h = 2**(-11/3) = 0.0787,
2**-8 = 0.0039 and 2**(-53/3) = 4.8e-6 for |a| <= 1. That step balances truncation (h**2) against
round-off (u/h) and leaves errors of order u**(2/3) relative to the gradient. The suite checked only
float64; here each dtype's value, and, for float32 and float16, that central differences of a loss
evaluated in that dtype reach that accuracy with the default step and do worse with a step 8 times
larger or smaller (the bottom of the V), while float64's step is far too small for them.
"""

import numpy as np
import pytest

from lnlib import gradcheck, layer_norm_forward
from lnlib.oracle import LONGDOUBLE_IS_WIDER, layer_norm_longdouble, max_rel_error

U = {np.float16: 2.0**-11, np.float32: 2.0**-24, np.float64: 2.0**-53}


@pytest.mark.parametrize("dtype", list(U))
def test_unit_roundoff_of_each_dtype(dtype):
    assert gradcheck.unit_roundoff(dtype) == U[dtype] == float(np.finfo(dtype).eps) / 2


@pytest.mark.parametrize("dtype", list(U))
def test_default_step_of_each_dtype(dtype):
    a = np.array([0.0, 0.5, -1.0, -3.0, 100.0], dtype)
    step = gradcheck.default_step(a)
    assert np.array_equal(step, np.cbrt(U[dtype]) * np.array([1.0, 1.0, 1.0, 3.0, 100.0]))
    assert step.shape == a.shape and np.all(step > 0)


def test_default_steps_are_the_documented_numbers():
    one = np.array(1.0)
    # a cube root of a power of two, but np.cbrt is not correctly rounded: its AVX-512 loop gives 2^-8
    # and its scalar loop one ulp less (NPY_DISABLE_CPU_FEATURES in tests/variation_matrix.py)
    assert abs(float(gradcheck.default_step(one.astype(np.float32))) / 2.0**-8 - 1) <= 4 * 2.0**-53
    assert abs(float(gradcheck.default_step(one.astype(np.float16))) - 0.0787) < 1e-4
    assert abs(float(gradcheck.default_step(one)) - 4.8e-6) < 1e-7  # "about 4.8e-6 in float64"


def _central_difference_in(dtype, x, gamma, beta, dy, factor):
    """dL/dx for L = sum(dy * y), y computed by lnlib in ``dtype``, with factor * default_step(x)."""
    dx = np.empty(x.shape)
    for j in range(x.shape[-1]):
        h = (factor * gradcheck.default_step(x[:, j])).astype(dtype)
        plus, minus = x.copy(), x.copy()
        plus[:, j] = x[:, j] + h
        minus[:, j] = x[:, j] - h
        width = plus[:, j].astype(np.float64) - minus[:, j]  # the step actually taken, exactly
        loss = [(dy * layer_norm_forward(p, gamma, beta)[0].astype(np.float64)).sum(-1) for p in (plus, minus)]
        dx[:, j] = (loss[0] - loss[1]) / width
    return dx


# Measured over 20 seeds (rows of 8, standard normal, gamma in [0.5, 2]): the worst error of the
# default step was 2.6e-5 in float32 (1.7 u**(2/3)) and 8.8e-3 in float16 (1.4 u**(2/3)); bounds are
# 10 times that. With float64's step the float32 error was 6e-3 to 2e-2; steps 8 times larger or
# smaller were never less than 2.07 times worse than the default.
WORST = {np.float32: 2.6e-4, np.float16: 8.8e-2}


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("seed", range(4))
def test_default_step_reaches_u_two_thirds_in_its_own_precision(dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 8)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 8).astype(dtype), rng.standard_normal(8).astype(dtype)
    dy = rng.standard_normal(x.shape)  # random: a sum loss hides errors (see lnlib.gradcheck)
    exact = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)[1]
    err = {f: max_rel_error(_central_difference_in(dtype, x, gamma, beta, dy, f), exact) for f in (1, 8, 1 / 8)}
    assert err[1] <= WORST[dtype]
    assert err[1] < err[8] and err[1] < err[1 / 8]  # the default sits at the bottom of the V
