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
    """Return ``a`` if it is a NumPy array of a real floating dtype (float16/32/64), else raise TypeError."""
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of float16, float32 or float64, got {type(a).__name__}"
        )
    if a.dtype.type not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have a real floating dtype (float16, float32 or float64), got {a.dtype.name}"
        )
    return a


def check_x(x) -> np.ndarray:
    """Check the input of the forward pass: a float array of shape (..., D) with D >= 1."""
    check_float_array("x", x)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis (shape (..., D)); got a 0-d array")
    if x.shape[-1] == 0:
        raise ValueError(f"x must have D = x.shape[-1] >= 1; got shape {x.shape}")
    return x


def check_param(name: str, p, D: int):
    """Check gamma or beta: None, or a float array of shape (D,)."""
    if p is None:
        return None
    check_float_array(name, p)
    if p.shape != (D,):
        raise ValueError(f"{name} must have shape (D,) = ({D},) to match x.shape[-1]; got {p.shape}")
    return p


def check_eps(eps) -> float:
    """Check eps: a finite, positive real number (bool is rejected: True is not a tolerance)."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0.0):
        raise ValueError(f"eps must be a finite positive number, got {eps!r}")
    return eps


def check_dy(dy, shape: tuple) -> np.ndarray:
    """Check the upstream gradient: a float array with exactly the forward output's shape."""
    check_float_array("dy", dy)
    if dy.shape != tuple(shape):
        raise ValueError(f"dy must have the shape of y, {tuple(shape)}; got {dy.shape}")
    return dy
