r"""Many derivations of the LayerNorm backward, one answer.

Each function takes ``(dy, x, gamma, eps)`` with ``x`` and ``dy`` of shape (..., D) and ``gamma`` of
shape (D,) (or ``None`` for ones), and returns ``(dx, dgamma, dbeta)`` computed in the dtype of ``x``.
They share no code beyond the forward's definitions, so their agreement (asserted to 1e-12 in the tests
and in the book) is evidence that each is right.

================================ ============================================================
function                         route
================================ ============================================================
``staged_graph``                 the forward as ten primitive nodes, walked back node by node
                                 (the style of the batch-norm tutorials)
``through_mean_and_variance``    chain rule through the two statistics mu and sigma^2
``through_mean_and_std``         chain rule through mu and sigma = sqrt(sigma^2 + eps)
``compact``                      the simplified three-term formula (what lnlib runs)
``projection``                   rstd * P g with the D x D projector P = I - 11^T/D - x_hat x_hat^T/D
``jacobian``                     the full Jacobian dy/dx per row, materialised, then J^T dy
================================ ============================================================
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "staged_graph",
    "through_mean_and_variance",
    "through_mean_and_std",
    "compact",
    "projection",
    "jacobian",
    "layer_norm_jacobian",
    "DERIVATIONS",
]


def _param_grads(dy, x_hat, gamma):
    lead = tuple(range(dy.ndim - 1))
    g = dy if gamma is None else dy * gamma
    return g, (dy * x_hat).sum(axis=lead), dy.sum(axis=lead)


def staged_graph(dy, x, gamma=None, eps=1e-5):
    """Backward through the forward written as primitive nodes, each with its local derivative.

    Forward nodes: ``mu = mean(x)``, ``xmu = x - mu``, ``sq = xmu**2``, ``var = mean(sq)``,
    ``sqrtvar = sqrt(var + eps)``, ``ivar = 1/sqrtvar``, ``x_hat = xmu * ivar``, ``y = gamma*x_hat + beta``.
    """
    D = x.shape[-1]
    lead = tuple(range(x.ndim - 1))
    mu = x.sum(-1, keepdims=True) / D
    xmu = x - mu
    sq = xmu**2
    var = sq.sum(-1, keepdims=True) / D
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    x_hat = xmu * ivar
    # walk back
    dbeta = dy.sum(axis=lead)
    dgamma = (dy * x_hat).sum(axis=lead)
    dx_hat = dy if gamma is None else dy * gamma
    divar = (dx_hat * xmu).sum(-1, keepdims=True)
    dxmu1 = dx_hat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / np.sqrt(var + eps) * dsqrtvar
    dsq = np.ones_like(sq) / D * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -(dx1.sum(-1, keepdims=True))
    dx2 = np.ones_like(x) / D * dmu
    return dx1 + dx2, dgamma, dbeta


def through_mean_and_variance(dy, x, gamma=None, eps=1e-5):
    r"""Chain rule with mu and sigma^2 as intermediate variables.

    .. math::
        \frac{\partial L}{\partial\sigma^2} = -\tfrac12(\sigma^2+\varepsilon)^{-3/2}\sum_j g_j (x_j-\mu),\quad
        \frac{\partial L}{\partial\mu} = -\mathrm{rstd}\sum_j g_j - \frac{\partial L}{\partial\sigma^2}\,\frac2D\sum_j(x_j-\mu),

    .. math::
        dx_i = g_i\,\mathrm{rstd} + \frac{\partial L}{\partial\sigma^2}\frac{2(x_i-\mu)}{D} + \frac1D\frac{\partial L}{\partial\mu}
    """
    D = x.shape[-1]
    mu = x.sum(-1, keepdims=True) / D
    xmu = x - mu
    var = (xmu * xmu).sum(-1, keepdims=True) / D
    rstd = (var + eps) ** -0.5
    g, dgamma, dbeta = _param_grads(dy, xmu * rstd, gamma)
    dvar = -0.5 * (var + eps) ** -1.5 * (g * xmu).sum(-1, keepdims=True)
    dmu = -rstd * g.sum(-1, keepdims=True) - dvar * 2.0 * xmu.sum(-1, keepdims=True) / D
    return g * rstd + dvar * 2.0 * xmu / D + dmu / D, dgamma, dbeta


def through_mean_and_std(dy, x, gamma=None, eps=1e-5):
    r"""Chain rule with mu and s = sqrt(sigma^2 + eps): x_hat = (x - mu)/s, ds/dx_i = (x_i - mu)/(D s).

    .. math:: dx_i = \frac{g_i - \overline{g}}{s} - \frac{x_i-\mu}{D s}\sum_j g_j\frac{x_j-\mu}{s^2}
    """
    D = x.shape[-1]
    mu = x.sum(-1, keepdims=True) / D
    xmu = x - mu
    s = np.sqrt((xmu * xmu).sum(-1, keepdims=True) / D + eps)
    g, dgamma, dbeta = _param_grads(dy, xmu / s, gamma)
    ds = -(g * xmu).sum(-1, keepdims=True) / s**2  # dL/ds
    # x_hat_j depends on x_i directly (1/s), through mu (-1/(D s)) and through s (ds/dx_i)
    dx = g / s - g.sum(-1, keepdims=True) / (D * s) + ds * xmu / (D * s)
    return dx, dgamma, dbeta


def compact(dy, x, gamma=None, eps=1e-5):
    r"""The three-term formula: :math:`dx = \mathrm{rstd}\,(g - \overline g - \hat x\,\overline{g\hat x})`."""
    D = x.shape[-1]
    mu = x.sum(-1, keepdims=True) / D
    xmu = x - mu
    rstd = 1.0 / np.sqrt((xmu * xmu).sum(-1, keepdims=True) / D + eps)
    x_hat = xmu * rstd
    g, dgamma, dbeta = _param_grads(dy, x_hat, gamma)
    dx = rstd * (g - g.mean(-1, keepdims=True) - x_hat * (g * x_hat).mean(-1, keepdims=True))
    return dx, dgamma, dbeta


def projection(dy, x, gamma=None, eps=1e-5):
    r"""dx = rstd * P g with the materialised projector :math:`P = I - \mathbf{1}\mathbf{1}^T/D - \hat x\hat x^T/D`.

    When eps = 0, :math:`\|\hat x\|^2 = D`, so P removes exactly the directions 1 and x_hat
    (orthogonal, since x_hat sums to zero): it is the orthogonal projector onto their complement.
    Costs O(D^2) memory per row: for teaching and checking, not for use.
    """
    D = x.shape[-1]
    mu = x.mean(-1, keepdims=True)
    xmu = x - mu
    rstd = 1.0 / np.sqrt((xmu * xmu).mean(-1, keepdims=True) + eps)
    x_hat = xmu * rstd
    g, dgamma, dbeta = _param_grads(dy, x_hat, gamma)
    eye = np.eye(D, dtype=x.dtype)
    P = eye - np.ones((D, D), x.dtype) / D - x_hat[..., :, None] * x_hat[..., None, :] / D  # ...,D,D
    dx = rstd * np.einsum("...ij,...j->...i", P, g)
    return dx, dgamma, dbeta


def layer_norm_jacobian(x, gamma=None, eps=1e-5):
    r"""The Jacobian :math:`J_{ij} = \partial y_i / \partial x_j` of each row, shape (..., D, D).

    Written from the elementwise derivative, not from the projection:

    .. math:: J_{ij} = \gamma_i\Bigl[\bigl(\delta_{ij} - \tfrac1D\bigr)\mathrm{rstd}
              - \frac{(x_i-\mu)(x_j-\mu)}{D}\,\mathrm{rstd}^3\Bigr]

    Examples
    --------
    >>> import numpy as np
    >>> J = layer_norm_jacobian(np.array([1.0, 2.0, 4.0]), eps=0.0)
    >>> bool(np.allclose(J @ np.ones(3), 0))  # shifting x does not change y
    True
    """
    D = x.shape[-1]
    mu = x.sum(-1, keepdims=True) / D
    xmu = x - mu
    rstd = 1.0 / np.sqrt((xmu * xmu).sum(-1, keepdims=True) / D + eps)
    r = rstd[..., None]  # ...,1,1
    J = (np.eye(D, dtype=x.dtype) - 1.0 / D) * r - xmu[..., :, None] * xmu[..., None, :] / D * r**3
    return J if gamma is None else gamma[:, None] * J


def jacobian(dy, x, gamma=None, eps=1e-5):
    """dx = J^T dy with the materialised Jacobian of :func:`layer_norm_jacobian`."""
    D = x.shape[-1]
    lead = tuple(range(x.ndim - 1))
    J = layer_norm_jacobian(x, gamma, eps)
    dx = np.einsum("...ij,...i->...j", J, dy)
    mu = x.sum(-1, keepdims=True) / D
    x_hat = (x - mu) / np.sqrt(((x - mu) ** 2).sum(-1, keepdims=True) / D + eps)
    return dx, (dy * x_hat).sum(axis=lead), dy.sum(axis=lead)


#: name -> function, in the book's order
DERIVATIONS = {
    "staged_graph": staged_graph,
    "through_mean_and_variance": through_mean_and_variance,
    "through_mean_and_std": through_mean_and_std,
    "compact": compact,
    "projection": projection,
    "jacobian": jacobian,
}
