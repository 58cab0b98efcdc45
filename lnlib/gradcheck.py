r"""Numerical gradients of LayerNorm, to check an analytic backward against.

Throughout, :math:`u = 2^{-53}` is the unit roundoff of float64, ``np.finfo(np.float64).eps / 2``
(the largest relative error of one rounding); :func:`unit_roundoff` returns it. Two numerical routes
and one comparison:

* :func:`central_difference` -- :math:`(L(x+h) - L(x-h)) / 2h`. Its error is about
  :math:`h^2|L'''|/6` (truncation) plus :math:`u|L|/h` (round-off of the two evaluations), smallest
  at :math:`h^* = (3u|L|/|L'''|)^{1/3}`. The default step leaves out the problem's constant:
  :math:`h = u^{1/3}\max(1, |x|)`, about 4.8e-6 in float64, which leaves errors of order
  :math:`u^{2/3}\approx 2.3\times10^{-11}` relative to the gradient, times a constant of the problem.
* :func:`complex_step` -- :math:`\operatorname{Im} L(x + ih) / h` (Squire and Trapp, 1998): no
  subtraction, so no cancellation, so h can be 1e-30 and the derivative is exact to round-off. It needs
  a forward written with analytic operations only, which :func:`lnlib.reference.forward` is.
* :func:`check_gradients` -- compares an implementation's backward with the complex step through
  the implementation's own forward when that forward accepts complex input, else through
  :func:`lnlib.reference.forward`, and then also reports how far the two forwards' outputs differ.

The loss is :math:`L = \sum dy \odot y` with a *random* ``dy``. With ``dy`` all ones (``y.sum()``),
:math:`g = \gamma` and :math:`dx = \mathrm{rstd}\,(g - \bar g - \hat x\,\overline{g\hat x})` is zero
whenever ``gamma`` is constant (as at initialisation), so a backward that returns zeros, scales dx
wrongly or drops the radial term :math:`\hat x\,\overline{g\hat x}` would pass.

Nothing here modifies its arguments: every perturbation is made on a private copy.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import numpy as np

from . import reference
from .oracle import max_rel_error

__all__ = ["central_difference", "complex_step", "check_gradients", "GradCheck", "default_step", "unit_roundoff"]


def unit_roundoff(dtype=np.float64) -> float:
    """The unit roundoff u of a float type: half its machine epsilon, ``2**-53`` for float64.

    Examples
    --------
    >>> unit_roundoff() == 2.0**-53
    True
    """
    return float(np.finfo(dtype).eps) / 2


def default_step(a: np.ndarray) -> np.ndarray:
    """The central-difference step for each element: ``u**(1/3) * max(1, |a|)``, u of a's precision.

    Examples
    --------
    >>> import numpy as np
    >>> float(default_step(np.array(0.5))) == float(np.cbrt(2.0**-53))
    True
    """
    return np.cbrt(unit_roundoff(a.dtype)) * np.maximum(1.0, np.abs(a))


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
    """What :func:`check_gradients` found, each error as max abs error over max abs value.

    Attributes
    ----------
    dx, dgamma, dbeta : float or None
        The backward's gradients against the complex step (None where gamma or beta is None).
    y : float
        The forward's output against the output of the function the complex step went through
        (0.0 when that function is the forward itself).
    differentiated : str
        The name of the function the complex step differentiated.
    """

    dx: float
    dgamma: float | None
    dbeta: float | None
    y: float = 0.0
    differentiated: str = ""

    def worst(self) -> float:
        """The largest error, ``y`` included: a wrong forward fails the check as a wrong backward does."""
        return max(e for e in (self.y, self.dx, self.dgamma, self.dbeta) if e is not None)


def _name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _accepts_complex(forward, x, gamma, beta, eps) -> bool:
    """Whether ``forward`` computes on a complex ``x`` (returns a complex y) instead of refusing it."""
    copies = [None if a is None else np.array(a, dtype=np.float64) for a in (gamma, beta)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning)  # dropping Im is refusing
            y = forward(np.array(x, dtype=np.complex128), *copies, eps)[0]
    except (TypeError, np.exceptions.ComplexWarning):
        return False
    return np.iscomplexobj(y)


def check_gradients(forward, backward, x, gamma=None, beta=None, dy=None, eps=1e-5, seed=0) -> GradCheck:
    """Compare ``backward(dy, forward(x, gamma, beta, eps)[1])`` with the complex step.

    Which function the complex step differentiates:

    * ``forward`` itself, if it accepts a complex ``x`` (it must then use analytic operations only,
      see :func:`complex_step`); a wrong forward then gives a large ``dx`` error.
    * otherwise (``lnlib.layer_norm_forward`` refuses complex arrays with a TypeError)
      :func:`lnlib.reference.forward`, the same equations written for complex input, with the same
      eps; the report's ``y`` then says how far ``forward``'s output is from that function's, so a
      wrong forward still fails the check.

    The report's ``differentiated`` names the function used.

    Parameters
    ----------
    forward, backward : callables with lnlib's signatures
        ``forward(x, gamma, beta, eps) -> (y, cache)``, ``backward(dy, cache) -> (dx, dgamma, dbeta)``.
        They receive private copies of the arrays.
    x, gamma, beta : arrays
        float64 for a check to round-off.
    dy : ndarray, optional
        Default: standard normal with the given ``seed``.
    eps : float
    seed : int

    Returns
    -------
    GradCheck
        ``dx``, ``dgamma``, ``dbeta`` and ``y`` errors as max abs error over max abs value, and the
        name of the function differentiated.

    Examples
    --------
    >>> import numpy as np
    >>> from lnlib import layer_norm_forward, layer_norm_backward
    >>> x = np.random.default_rng(1).standard_normal((3, 6))
    >>> report = check_gradients(layer_norm_forward, layer_norm_backward, x, np.ones(6), np.zeros(6))
    >>> report.worst() < 1e-13, report.differentiated
    (True, 'lnlib.reference.forward')
    >>> from lnlib import reference
    >>> check_gradients(reference.forward, reference.backward, x).differentiated
    'lnlib.reference.forward'
    """
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(x.shape)

    def copies():
        return [None if a is None else np.array(a) for a in (x, gamma, beta)]

    y, cache = forward(*copies(), eps)
    dx, dgamma, dbeta = backward(np.array(dy), cache)
    if _accepts_complex(forward, x, gamma, beta, eps):
        f, name = forward, _name(forward)
    else:
        f, name = reference.forward, _name(reference.forward)

    def differentiate(a, g, b):
        return f(a, g, b, eps)[0]

    ref = complex_step(x, gamma, beta, dy, f=differentiate)
    y_ref = differentiate(*[None if a is None else np.array(a, dtype=np.float64) for a in (x, gamma, beta)])
    return GradCheck(
        max_rel_error(dx, ref[0]),
        None if dgamma is None else max_rel_error(dgamma, ref[1]),
        None if dbeta is None else max_rel_error(dbeta, ref[2]),
        max_rel_error(y, y_ref),
        name,
    )
