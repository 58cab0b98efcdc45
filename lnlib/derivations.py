r"""Many derivations of the LayerNorm backward, one answer.

Each function takes ``(dy, x, gamma, eps)`` with ``x`` and ``dy`` of shape (..., D) and ``gamma`` of
shape (D,) (or ``None`` for ones), and returns ``(dx, dgamma, dbeta)`` computed in the dtype of ``x``.
They share no code beyond the forward's definitions and the parameter gradients, so their agreement
(asserted to 1e-12 in the tests and in the book) is evidence that each is right.

================================ ============================================================
function                         route
================================ ============================================================
``staged_graph``                 the forward as eight primitive nodes (:func:`staged_forward`),
                                 walked back node by node (the style of the batch-norm tutorials)
``through_mean_and_variance``    chain rule through the two statistics mu and sigma^2
``through_mean_and_std``         chain rule through mu and s = sqrt(sigma^2 + eps)
``compact``                      the simplified three-term formula (what lnlib runs)
``projection``                   rstd * M g with the D x D matrix M = I - 11^T/D - x_hat x_hat^T/D
``jacobian``                     the full Jacobian dy/dx per row, materialised, then J^T dy
================================ ============================================================
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "staged_forward",
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


def staged_forward(x, eps=1e-5):
    """The forward up to ``x_hat`` as seven primitive nodes; returns every node's value.

    Node names are those of the book's figure: ``mu``, ``xmu``, ``sq``, ``var``, ``sqrtvar``,
    ``ivar``, ``x_hat`` (the eighth node, ``y = gamma * x_hat + beta``, is not needed by the backward).

    Examples
    --------
    >>> import numpy as np
    >>> mu, xmu, sq, var, sqrtvar, ivar, x_hat = staged_forward(np.array([1.0, 3.0]), eps=0.0)
    >>> [float(v) for v in x_hat]
    [-1.0, 1.0]
    """
    D = x.shape[-1]
    mu = x.sum(-1, keepdims=True) / D  # node 1: mean of the row
    xmu = x - mu  # node 2: centred row
    sq = xmu**2  # node 3: squares
    var = sq.sum(-1, keepdims=True) / D  # node 4: variance
    sqrtvar = np.sqrt(var + eps)  # node 5: standard deviation
    ivar = 1.0 / sqrtvar  # node 6: its reciprocal, rstd
    x_hat = xmu * ivar  # node 7: normalised row
    return mu, xmu, sq, var, sqrtvar, ivar, x_hat


def staged_graph(dy, x, gamma=None, eps=1e-5):
    """Backward through the nodes of :func:`staged_forward`, last node first.

    Each step multiplies the gradient arriving at a node (``d<node>`` = dL/d<node>) by the node's
    local derivative and passes it to the node's inputs; where a value feeds two nodes (``x`` and
    ``xmu``), the gradients from both add.
    """
    D = x.shape[-1]
    lead = tuple(range(x.ndim - 1))  # the batch axes
    mu, xmu, sq, var, sqrtvar, ivar, x_hat = staged_forward(x, eps)
    # node 8, y = gamma * x_hat + beta
    dbeta = dy.sum(axis=lead)
    dgamma = (dy * x_hat).sum(axis=lead)
    dx_hat = dy if gamma is None else dy * gamma
    # node 7, x_hat = xmu * ivar
    divar = (dx_hat * xmu).sum(-1, keepdims=True)  # ivar feeds every x_hat_i
    dxmu1 = dx_hat * ivar
    # node 6, ivar = 1 / sqrtvar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    # node 5, sqrtvar = sqrt(var + eps)
    dvar = 0.5 / sqrtvar * dsqrtvar
    # node 4, var = sum(sq) / D
    dsq = np.full_like(sq, 1.0 / D) * dvar
    # node 3, sq = xmu**2
    dxmu2 = 2 * xmu * dsq
    dxmu = dxmu1 + dxmu2  # xmu feeds nodes 7 and 3: the two gradients add
    # node 2, xmu = x - mu
    dx1 = dxmu
    dmu = -dxmu.sum(-1, keepdims=True)  # mu feeds every xmu_i
    # node 1, mu = sum(x) / D
    dx2 = np.full_like(x, 1.0 / D) * dmu
    dx = dx1 + dx2  # x feeds nodes 2 and 1: the two gradients add
    return dx, dgamma, dbeta


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
    # dL/dvar: var reaches L through every x_hat_j
    dvar = -0.5 * (var + eps) ** -1.5 * (g * xmu).sum(-1, keepdims=True)
    # dL/dmu: through every x_hat_j directly, and through var
    dmu = (-rstd * g.sum(-1, keepdims=True)
           + dvar * -2.0 * xmu.sum(-1, keepdims=True) / D)
    # dx_i: directly, through var (dvar/dx_i = 2 xmu_i / D), through mu (dmu/dx_i = 1/D)
    dx = g * rstd + dvar * 2.0 * xmu / D + dmu / D
    return dx, dgamma, dbeta


def through_mean_and_std(dy, x, gamma=None, eps=1e-5):
    r"""Chain rule with mu and s = sqrt(sigma^2 + eps): x_hat = (x - mu)/s, ds/dx_i = (x_i - mu)/(D s).

    .. math:: dx_i = \frac{g_i - \overline{g}}{s} - \frac{x_i-\mu}{D s}\sum_j g_j\frac{x_j-\mu}{s^2}
    """
    D = x.shape[-1]
    mu = x.sum(-1, keepdims=True) / D
    xmu = x - mu
    s = np.sqrt((xmu * xmu).sum(-1, keepdims=True) / D + eps)
    g, dgamma, dbeta = _param_grads(dy, xmu / s, gamma)
    # dL/ds: s reaches L through every x_hat_j = xmu_j / s
    ds = -(g * xmu).sum(-1, keepdims=True) / s**2
    # dx_i: directly (1/s), through mu (-1/(D s) on every x_hat_j), through s
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
    g_mean = g.mean(-1, keepdims=True)
    gx_mean = (g * x_hat).mean(-1, keepdims=True)
    dx = rstd * (g - g_mean - x_hat * gx_mean)
    return dx, dgamma, dbeta


def projection(dy, x, gamma=None, eps=1e-5):
    r"""dx = rstd * M g with the materialised matrix :math:`M = I - \mathbf{1}\mathbf{1}^T/D - \hat x\hat x^T/D`.

    M is symmetric; it removes the direction 1 and (up to a factor eps * rstd^2) the direction
    x_hat. When eps = 0 it is the orthogonal projector onto the complement of both.
    Costs O(D^2) memory per row: for teaching and checking, not for use.
    """
    D = x.shape[-1]
    mu = x.mean(-1, keepdims=True)
    xmu = x - mu
    rstd = 1.0 / np.sqrt((xmu * xmu).mean(-1, keepdims=True) + eps)
    x_hat = xmu * rstd
    g, dgamma, dbeta = _param_grads(dy, x_hat, gamma)
    eye, ones = np.eye(D, dtype=x.dtype), np.ones((D, D), x.dtype)
    outer = x_hat[..., :, None] * x_hat[..., None, :]  # ..., D, D
    M = eye - ones / D - outer / D  # ..., D, D: one matrix per row
    dx = rstd * np.einsum("...ij,...j->...i", M, g)  # rstd * (M @ g), row by row
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
    r = rstd[..., None]  # ..., 1, 1
    direct = (np.eye(D, dtype=x.dtype) - 1.0 / D) * r  # (delta_ij - 1/D) rstd
    radial = xmu[..., :, None] * xmu[..., None, :] / D * r**3  # ..., D, D
    J = direct - radial
    return J if gamma is None else gamma[:, None] * J


def jacobian(dy, x, gamma=None, eps=1e-5):
    """dx = J^T dy with the materialised Jacobian of :func:`layer_norm_jacobian`."""
    D = x.shape[-1]
    lead = tuple(range(x.ndim - 1))
    J = layer_norm_jacobian(x, gamma, eps)  # ..., D, D
    dx = np.einsum("...ij,...i->...j", J, dy)  # dx_j = sum_i J_ij dy_i
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
