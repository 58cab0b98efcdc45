r"""The step-by-step LayerNorm the book builds, one line per equation.

Readable first: every line carries its shape, the cache is the llm.c minimum ``(x, mean, rstd,
gamma)`` and the backward recomputes ``x_hat`` from it (memory traded for a little compute).
The cache keeps one mean and one rstd per row, arrays of shape ``x.shape[:-1]`` ((B, T) for a
(B, T, D) input), the convention of :class:`lnlib.LayerNormCache`; the forward computes them with
``keepdims=True`` so they broadcast against the row, and the backward restores that last axis with
``[..., None]``.
It computes in the dtype of its input, so the same code runs in float32 to show what goes wrong, in
float64 or long double as a reference, and on complex arrays for the complex-step derivative (every
operation here is analytic: ``xc * xc``, never ``abs(xc)**2``).

:func:`lnlib.layer_norm_forward` is the hardened version of these lines (shifted, scaled, float64);
the tests check that the two agree on ordinary inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["forward", "backward"]


def forward(x, gamma=None, beta=None, eps=1e-5):
    r"""LayerNorm over the last axis, computed in the dtype of ``x``.

    Parameters
    ----------
    x : ndarray, shape (..., D)
        Real or complex floating array (complex only for the complex step).
    gamma, beta : ndarray, shape (D,), optional
        Scale and shift; ``None`` means ones and zeros.
    eps : float, default 1e-5

    Returns
    -------
    y : ndarray, shape (..., D)
    cache : tuple (x, mean, rstd, gamma)
        ``x`` and ``gamma`` are the caller's arrays (not copies); ``mean`` and ``rstd`` hold one
        number per row, shape (...,) = ``x.shape[:-1]``, in the dtype of ``x``.

    Notes
    -----
    .. math::
        \mu = \tfrac1D \textstyle\sum_j x_j,\quad
        \sigma^2 = \tfrac1D \textstyle\sum_j (x_j-\mu)^2,\quad
        \mathrm{rstd} = (\sigma^2+\varepsilon)^{-1/2},\quad
        \hat x = (x-\mu)\,\mathrm{rstd},\quad
        y = \gamma\hat x + \beta

    Examples
    --------
    >>> import numpy as np
    >>> from lnlib import reference
    >>> y, cache = reference.forward(np.array([[1.0, 2.0, 3.0]]))
    >>> np.round(y, 4)
    array([[-1.2247,  0.    ,  1.2247]])
    >>> x, mean, rstd, gamma = cache
    >>> mean.shape, rstd.shape
    ((1,), (1,))
    """
    D = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / D  # ...,1   mu
    xc = x - mean  # ...,D   x - mu
    var = (xc * xc).sum(axis=-1, keepdims=True) / D  # ...,1   sigma^2, two-pass
    rstd = 1.0 / np.sqrt(var + eps)  # ...,1   1/sqrt(sigma^2 + eps)
    x_hat = xc * rstd  # ...,D
    y = x_hat if gamma is None else x_hat * gamma  # ...,D
    if beta is not None:
        y = y + beta
    return y, (x, mean[..., 0], rstd[..., 0], gamma)  # mean, rstd: ...  one per row


def backward(dy, cache):
    r"""Gradients of :func:`forward`: ``(dx, dgamma, dbeta)``, all three always returned.

    Parameters
    ----------
    dy : ndarray, shape (..., D)
    cache : tuple (x, mean, rstd, gamma)
        The cache from :func:`forward`; ``mean`` and ``rstd`` of shape (...,), one per row.

    Returns
    -------
    dx : ndarray, shape (..., D)
    dgamma, dbeta : ndarray, shape (D,)
        Summed over every leading axis.

    Notes
    -----
    .. math::
        g = \gamma\,dy,\qquad
        dx = \mathrm{rstd}\bigl(g - \overline{g} - \hat x\,\overline{g\hat x}\bigr)

    Examples
    --------
    >>> import numpy as np
    >>> from lnlib import reference
    >>> x = np.array([[1.0, 2.0, 4.0]])
    >>> y, cache = reference.forward(x)
    >>> dx, dgamma, dbeta = reference.backward(np.array([[1.0, 0.0, 0.0]]), cache)
    >>> float(abs(dx.sum())) < 1e-15
    True
    """
    x, mean, rstd, gamma = cache
    mean, rstd = mean[..., None], rstd[..., None]  # ...,1   one per row, to broadcast
    D = x.shape[-1]
    lead = tuple(range(x.ndim - 1))
    x_hat = (x - mean) * rstd  # ...,D   recomputed: the cache keeps x, not x_hat
    dbeta = dy.sum(axis=lead)  # D
    dgamma = (dy * x_hat).sum(axis=lead)  # D
    g = dy if gamma is None else dy * gamma  # ...,D   gradient reaching x_hat
    g_mean = g.sum(axis=-1, keepdims=True) / D  # ...,1
    gx_mean = (g * x_hat).sum(axis=-1, keepdims=True) / D  # ...,1
    dx = rstd * (g - g_mean - x_hat * gx_mean)  # ...,D
    return dx, dgamma, dbeta
