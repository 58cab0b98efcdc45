r"""Numerical gradients of LayerNorm, to check an analytic backward against.

Two numerical routes and one comparison:

* :func:`central_difference` -- :math:`(L(x+h) - L(x-h)) / 2h` with the step that balances truncation
  error (:math:`\propto h^2`) against round-off (:math:`\propto u/h`): :math:`h = u^{1/3}\max(1, |x|)`,
  about 6e-6 in float64, which leaves errors near :math:`u^{2/3}\approx 4\times10^{-11}`.
* :func:`complex_step` -- :math:`\operatorname{Im} L(x + ih) / h` (Squire and Trapp, 1998): no
  subtraction, so no cancellation, so h can be 1e-30 and the derivative is exact to round-off. It needs
  a forward written with analytic operations only, which :func:`lnlib.reference.forward` is.
* :func:`check_gradients` -- compares an implementation's backward with the complex step.

The loss is :math:`L = \sum dy \odot y` with a *random* ``dy``: with ``dy`` all ones (``y.sum()``)
the true ``dx`` is exactly zero (LayerNorm's output sums to a constant), so a backward that returns
zeros, or any multiple of the right answer plus a constant, would pass.

Nothing here modifies its arguments: every perturbation is made on a private copy.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from . import reference
from .oracle import max_rel_error

__all__ = ["central_difference", "complex_step", "check_gradients", "GradCheck", "default_step"]


def default_step(a: np.ndarray) -> np.ndarray:
    """The central-difference step for each element: ``u**(1/3) * max(1, |a|)`` in a's precision."""
    u = np.finfo(a.dtype).eps
    return np.cbrt(u) * np.maximum(1.0, np.abs(a))


def _forward_loss_rows(f, x, gamma, beta, dy):
    # Loss of each row separately (shape (...,)): LayerNorm acts row by row, so perturbing column j
    # of every row at once yields the derivative for every row in one evaluation.
    return (dy * f(x, gamma, beta)).sum(axis=-1)


def _numerical(f, x, gamma, beta, dy, derivative):
    """Apply ``derivative(loss, a, j)`` to each of x's columns and each entry of gamma and beta."""
    x = np.array(x, dtype=np.float64)
    dy = np.array(dy, dtype=np.float64)
    gamma = None if gamma is None else np.array(gamma, dtype=np.float64)
    beta = None if beta is None else np.array(beta, dtype=np.float64)
    D = x.shape[-1]
    dx = np.empty_like(x)
    for j in range(D):
        dx[..., j] = derivative(lambda xj: _forward_loss_rows(f, xj, gamma, beta, dy), x, (Ellipsis, j))
    grads = [dx]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p is None:
            grads.append(None)
            continue
        dp = np.empty(D)
        for j in range(D):
            if name == "gamma":
                loss = lambda pj: _forward_loss_rows(f, x, pj, beta, dy).sum()  # noqa: E731
            else:
                loss = lambda pj: _forward_loss_rows(f, x, gamma, pj, dy).sum()  # noqa: E731
            dp[j] = derivative(loss, p, j)
        grads.append(dp)
    return tuple(grads)


def _default_forward(x, gamma, beta):
    return reference.forward(x, gamma, beta, 1e-5)[0]


def central_difference(x, gamma=None, beta=None, dy=None, f: Callable | None = None, h=None):
    r"""Gradients of :math:`L=\sum dy\odot f(x,\gamma,\beta)` by central differences, in float64.

    Parameters
    ----------
    x : ndarray, shape (..., D)
    gamma, beta : ndarray, shape (D,), optional
    dy : ndarray, shape (..., D)
        The upstream gradient; use a random one.
    f : callable ``f(x, gamma, beta) -> y``, optional
        Must act on each row independently. Default: ``reference.forward`` with eps = 1e-5.
    h : float, optional
        A fixed step for every element; default :func:`default_step`. The step actually used is
        ``(a + h) - a``, which is exactly representable, so no representation error enters.

    Returns
    -------
    dx, dgamma, dbeta : ndarrays (dgamma/dbeta None where gamma/beta are None)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, dy = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    >>> dx, _, _ = central_difference(x, dy=dy)
    >>> from lnlib import layer_norm_forward, layer_norm_backward
    >>> _, cache = layer_norm_forward(x)
    >>> bool(np.allclose(dx, layer_norm_backward(dy, cache)[0], atol=1e-8))
    True
    """
    if dy is None:
        raise ValueError("dy must be given: a random upstream gradient (see the module notes)")
    f = f or _default_forward

    def derivative(loss, a, idx):
        step = default_step(a[idx]) if h is None else np.full_like(a[idx], h)
        plus, minus = a.copy(), a.copy()
        plus[idx] = a[idx] + step
        minus[idx] = a[idx] - step
        width = plus[idx] - minus[idx]  # exact: what the two points really are apart
        return (loss(plus) - loss(minus)) / width

    return _numerical(f, x, gamma, beta, dy, derivative)


def complex_step(x, gamma=None, beta=None, dy=None, f: Callable | None = None, h=1e-30):
    r"""Gradients by the complex step, :math:`\partial L/\partial a \approx \operatorname{Im} L(a + ih)/h`.

    ``f`` must accept complex arrays and use only analytic operations (no ``abs``, no conjugation);
    the default, ``reference.forward``, does. Exact to round-off for any h below about 1e-8.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, dy, gamma = rng.standard_normal((2, 4)), rng.standard_normal((2, 4)), rng.standard_normal(4)
    >>> dx, dgamma, _ = complex_step(x, gamma, dy=dy)
    >>> from lnlib import reference
    >>> dx_ref, dgamma_ref, _ = reference.backward(dy, reference.forward(x, gamma)[1])
    >>> bool(np.allclose(dx, dx_ref, rtol=1e-14, atol=1e-14)), bool(np.allclose(dgamma, dgamma_ref, rtol=1e-14))
    (True, True)
    """
    if dy is None:
        raise ValueError("dy must be given: a random upstream gradient (see the module notes)")
    f = f or _default_forward

    def derivative(loss, a, idx):
        z = a.astype(np.complex128)
        z[idx] += 1j * h
        return np.imag(loss(z)) / h

    return _numerical(f, x, gamma, beta, dy, derivative)


class GradCheck(NamedTuple):
    """Max-abs-over-max-abs errors of an analytic backward against the complex step (None if absent)."""

    dx: float
    dgamma: float | None
    dbeta: float | None

    def worst(self) -> float:
        return max(e for e in self if e is not None)


def check_gradients(forward, backward, x, gamma=None, beta=None, dy=None, eps=1e-5, seed=0) -> GradCheck:
    """Compare ``backward(dy, forward(x, gamma, beta, eps)[1])`` with the complex step.

    Parameters
    ----------
    forward, backward : callables with lnlib's signatures
    x, gamma, beta : arrays
    dy : ndarray, optional
        Default: standard normal with the given ``seed``.
    eps : float
    seed : int

    Returns
    -------
    GradCheck
        ``dx``, ``dgamma``, ``dbeta`` errors as max abs error over max abs value.

    Examples
    --------
    >>> import numpy as np
    >>> from lnlib import layer_norm_forward, layer_norm_backward
    >>> x = np.random.default_rng(1).standard_normal((3, 6))
    >>> report = check_gradients(layer_norm_forward, layer_norm_backward, x, np.ones(6), np.zeros(6))
    >>> report.worst() < 1e-13
    True
    """
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(x.shape)
    _, cache = forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = backward(dy, cache)
    ref = complex_step(x, gamma, beta, dy, f=lambda a, g, b: reference.forward(a, g, b, eps)[0])
    return GradCheck(
        max_rel_error(dx, ref[0]),
        None if dgamma is None else max_rel_error(dgamma, ref[1]),
        None if dbeta is None else max_rel_error(dbeta, ref[2]),
    )
