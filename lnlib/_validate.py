"""Argument checks shared by every LayerNorm entry point.

Each check raises ``TypeError`` for the wrong kind of thing and ``ValueError`` for the right kind with
a wrong value, and the message starts with the argument's name so a reader sees at once which one.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def _dtype_name(a) -> str:
    return getattr(getattr(a, "dtype", None), "name", type(a).__name__)


def check_float_array(name: str, a) -> np.ndarray:
    """Return ``a`` as a plain ndarray if it is a NumPy array of float16/32/64, else raise.

    Masked arrays are refused (TypeError): LayerNorm has no way to honour a mask, and silently
    dropping it would normalise values the caller said to ignore. Any other ndarray subclass is
    viewed as a plain ndarray here, once, so no subclass hook (``__array_ufunc__``,
    ``__array_finalize__``) runs inside the computation and every output is a plain ndarray.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must be a plain numpy.ndarray; got a masked array, whose mask LayerNorm cannot "
            f"honour: fill or drop the masked values first (for example {name}.filled(0.0))"
        )
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of float16, float32 or float64, got {type(a).__name__}"
        )
    if a.dtype.type not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have a real floating dtype (float16, float32 or float64), got {a.dtype.name}"
        )
    return a if type(a) is np.ndarray else a.view(np.ndarray)


def check_x(x) -> np.ndarray:
    """Check the input of the forward pass: a float array of shape (..., D) with D >= 1."""
    x = check_float_array("x", x)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis (shape (..., D)); got a 0-d array")
    if x.shape[-1] == 0:
        raise ValueError(f"x must have D = x.shape[-1] >= 1; got shape {x.shape}")
    return x


def check_param(name: str, p, D: int):
    """Check gamma or beta: None, or a float array of shape (D,)."""
    if p is None:
        return None
    p = check_float_array(name, p)
    if p.shape != (D,):
        raise ValueError(f"{name} must have shape (D,) = ({D},) to match x.shape[-1]; got {p.shape}")
    return p


def _short_repr(v, limit: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def check_eps(eps) -> float:
    """Check eps: a finite, positive real number that float64 can hold (bool is rejected).

    Returns it as a Python float. An int or Fraction too large for float64 (``10**400``) and a
    positive value that rounds to 0.0 (``Fraction(1, 10**400)``) are ValueErrors that say so.
    """
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    try:
        value = float(eps)
    except OverflowError:
        raise ValueError(
            f"eps must be a finite positive number; {_short_repr(eps)} is too large for float64"
        ) from None
    if value == 0.0 and eps > 0:
        raise ValueError(
            f"eps must be a finite positive number; {_short_repr(eps)} is positive but rounds to 0.0 "
            "in float64 (the smallest positive float64 is about 4.9e-324)"
        )
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"eps must be a finite positive number, got {_short_repr(eps)}")
    return value


def check_dy(dy, shape: tuple) -> np.ndarray:
    """Check the upstream gradient: a float array with exactly the forward output's shape."""
    dy = check_float_array("dy", dy)
    if dy.shape != tuple(shape):
        raise ValueError(f"dy must have the shape of y, {tuple(shape)}; got {dy.shape}")
    return dy
