"""Every way ``eps`` can be wrong gets its own message, in every entry point that takes an ``eps``.

``lnlib._validate.check_eps`` has four messages, and each is matched whole here, for each kind of bad
value that reaches it:

* TypeError ``eps must be a real number, got <type>``: a str, None, a bool (Python's or NumPy's), a
  complex number, an array, a Decimal (not a ``numbers.Real``);
* ValueError ``... is too large for float64``: an int or Fraction beyond float64 (either sign);
* ValueError ``... is positive but rounds to 0.0 in float64 (...)``: a positive Fraction below half the
  smallest subnormal;
* ValueError ``eps must be a finite positive number, got <repr>``: zero (either sign), negative, NaN,
  +-inf, and a negative value that rounds to -0.0.

Long values are shown cut to 40 characters. The entry points: ``lnlib.layer_norm_forward``,
``lnlib.torch.layer_norm`` and the ``lnlib.torch.LayerNorm`` constructor (``lnlib.cuda``'s forward checks
its device arrays first, so its eps check needs a GPU). A valid eps of any real type is kept as the
Python float it rounds to (``cache.eps``, ``LayerNorm.eps``).
"""

import decimal
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from lnlib import layer_norm_forward
from lnlib.torch import LayerNorm, layer_norm

X = np.ones((2, 4))
BIG = 10**400
BIG_SHOWN = "1" + "0" * 36 + "..."  # repr(10**400) cut to 40 characters
ENTRY_POINTS = {
    "layer_norm_forward": lambda eps: layer_norm_forward(X, eps=eps),
    "torch.layer_norm": lambda eps: layer_norm(torch.ones(2, 4, dtype=torch.float64), 4, eps=eps),
    "torch.LayerNorm": lambda eps: LayerNorm(4, eps=eps),
}

NOT_REAL = [("1e-5", "str"), (None, "NoneType"), (True, "bool"), (False, "bool"),
            (np.True_, type(np.True_).__name__), (1j, "complex"), (np.array([1e-5]), "ndarray"),
            (np.array(1e-5), "ndarray"), (decimal.Decimal("1e-5"), "Decimal")]
TOO_LARGE = [(BIG, BIG_SHOWN), (-BIG, "-" + BIG_SHOWN[:36] + "..."),
             (Fraction(BIG), "Fraction(" + "1" + "0" * 27 + "...")]
ROUNDS_TO_ZERO = [(Fraction(1, 10**400), "Fraction(1, " + "1" + "0" * 24 + "..."), (Fraction(1, 2**1076), None)]
NOT_POSITIVE = [(0.0, "0.0"), (-0.0, "-0.0"), (0, "0"), (-1e-5, "-1e-05"), (-1, "-1"), (float("nan"), "nan"),
                (float("inf"), "inf"), (-float("inf"), "-inf"), (np.float32(-1.0), None), (np.float64("nan"), None),
                (Fraction(-1, 10**400), None)]


def _ids(cases):
    return [type(v).__name__ + ":" + (repr(v) if len(repr(v)) < 20 else repr(v)[:17] + "...") for v, _ in cases]


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("eps, type_name", NOT_REAL, ids=_ids(NOT_REAL))
def test_not_a_real_number(entry, eps, type_name):
    with pytest.raises(TypeError, match=rf"^eps must be a real number, got {type_name}$"):
        ENTRY_POINTS[entry](eps)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("eps, shown", TOO_LARGE, ids=_ids(TOO_LARGE))
def test_too_large_for_float64(entry, eps, shown):
    with pytest.raises(ValueError) as info:
        ENTRY_POINTS[entry](eps)
    assert str(info.value) == f"eps must be a finite positive number; {shown} is too large for float64"


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("eps, shown", ROUNDS_TO_ZERO, ids=_ids(ROUNDS_TO_ZERO))
def test_positive_but_rounds_to_zero(entry, eps, shown):
    with pytest.raises(ValueError, match=r"^eps must be a finite positive number; (.*) is positive but rounds to 0\.0 "
                                         r"in float64 \(the smallest positive float64 is about 4\.9e-324\)$") as info:
        ENTRY_POINTS[entry](eps)
    if shown is not None:
        assert f"; {shown} is positive" in str(info.value)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("eps, shown", NOT_POSITIVE, ids=_ids(NOT_POSITIVE))
def test_not_finite_and_positive(entry, eps, shown):
    with pytest.raises(ValueError, match=r"^eps must be a finite positive number, got (.*)$") as info:
        ENTRY_POINTS[entry](eps)
    text = str(info.value)
    assert "too large" not in text and "rounds to 0.0" not in text
    if shown is not None:
        assert text.endswith(f"got {shown}")
    assert len(text) <= len("eps must be a finite positive number, got ") + 40


@pytest.mark.parametrize("eps", [1e-5, np.float32(1e-5), np.float16(1e-3), 1, np.int64(2), np.uint8(3), Fraction(1, 3),
                                 5e-324, Fraction(1, 2**1074), 1e308, 10**308],
                         ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_valid_eps_of_any_real_type_is_kept_as_a_python_float(eps):
    _, cache = layer_norm_forward(X, eps=eps)
    assert type(cache.eps) is float and cache.eps == float(eps) > 0
    module = LayerNorm(4, eps=eps)
    assert type(module.eps) is float and module.eps == float(eps)
    assert re.search(rf"eps={re.escape(repr(float(eps)))}", repr(module))
    y = layer_norm(torch.ones(2, 4, dtype=torch.float64), 4, eps=eps)
    assert torch.equal(y, torch.zeros(2, 4, dtype=torch.float64))  # a constant row: exactly 0 for any eps
