"""A typical NumPy LayerNorm as found in tutorials and blog posts, kept to compare.

It is correct in exact arithmetic and shows three habits common in code found
online: it computes in the dtype of its input with a plain mean, uses
``eps = 1e-8`` by default (PyTorch uses 1e-5), and keeps a twelve-entry cache
of which the backward reads three. The book uses it in the cache audit
(chapter 4), the edge cases (chapter 7) and the accuracy leaderboard
(chapter 9). Do not use it for anything else: :func:`lnlib.layer_norm_forward`
is the implementation to use.
"""

from __future__ import annotations

import numpy as np

DEFAULT_EPS = 1e-8


def forward(x, gamma, beta, eps=DEFAULT_EPS):
    """The typical forward: ``y = gamma (x - mean)/sqrt(var + eps) + beta``."""
    B, T, D = x.shape
    mean = np.mean(x, axis=-1, keepdims=True)
    x_centered = x - mean
    var = np.mean(x_centered**2, axis=-1, keepdims=True)
    std = np.sqrt(var + eps)
    x_norm = x_centered / std
    y = gamma * x_norm + beta
    cache = {"x": x, "x_centered": x_centered, "x_norm": x_norm,
             "mean": mean, "var": var, "std": std, "gamma": gamma,
             "beta": beta, "eps": eps, "B": B, "T": T, "D": D}
    return y, cache


def backward(dy, cache):
    """The typical backward, with ``dz = dy * gamma``:
    ``dx = (dz - mean(dz) - x_norm mean(dz x_norm)) / std``."""
    x_norm, std, gamma = cache["x_norm"], cache["std"], cache["gamma"]
    dgamma = np.sum(dy * x_norm, axis=(0, 1))
    dbeta = np.sum(dy, axis=(0, 1))
    dz = dy * gamma
    dz_mean = dz.mean(-1, keepdims=True)
    dzx_mean = (dz * x_norm).mean(-1, keepdims=True)
    dx = (dz - dz_mean - x_norm * dzx_mean) / std
    return dx, dgamma, dbeta


def cache_nbytes(cache) -> int:
    """Bytes held by the arrays in a typical cache (scalars not counted)."""
    return sum(v.nbytes for v in cache.values() if isinstance(v, np.ndarray))
