"""Launchers for the book's kernel versions (float32 CuPy arrays), to be verified and measured.

=======  =====================================================================================
version  what changes
=======  =====================================================================================
v0       the seed's design: three launches (mean, rstd, normalise), x read three times
v1       one block per row, looping over the row in memory: one launch, still three reads
v2       the row held in registers, threads per row sized to D, scalar loads: one read of x
v3       as v2 with 16-byte loads, statistics by E[x^2] - E[x]^2 in one pass (the common shortcut)
v4       as v3 with the shifted two-pass statistics: lnlib's kernel
=======  =====================================================================================

Backward: ``b0`` is the unfused design (row sums, then dx with atomicAdd for dgamma/dbeta);
``b1`` is lnlib's fused, deterministic kernel.
"""

from __future__ import annotations

import math

import numpy as np

from . import api
from . import kernels as K

FORWARD = ("v0", "v1", "v2", "v3", "v4")
BACKWARD = ("b0", "b1")


def _v0_forward(x, gamma, beta, eps, broken=False):
    import cupy

    M, D = x.shape
    mean = cupy.empty(M, cupy.float32)
    rstd = cupy.empty(M, cupy.float32)
    y = cupy.empty_like(x)
    b = "true" if broken else "false"
    K.get_kernel(f"v0_mean<{b}>", "versions")((M,), (256,), (x, mean, np.int32(M), np.int32(D)))
    K.get_kernel(f"v0_rstd<{b}>", "versions")((M,), (256,), (x, mean, rstd, np.int32(M), np.int32(D), np.float32(eps)))
    n = M * D
    K.get_kernel("v0_normalize", "versions")((math.ceil(n / 256),), (256,),
                                             (x, gamma, beta, mean, rstd, y, np.int32(M), np.int32(D)))
    return y, mean, rstd


def forward(version: str, x, gamma, beta, eps: float = 1e-5, broken: bool = False):
    """y for a (M, D) float32 CuPy array with ``version`` in :data:`FORWARD`.

    ``broken=True`` (v0 only) runs the seed sketch's block reduction, which ignores all warps but the first.
    """
    if version == "v0":
        return _v0_forward(x, gamma, beta, eps, broken)[0]
    D = x.shape[-1]
    cfg = {
        "v1": lambda: K.RowConfig("looped"),
        "v2": lambda: K.choose(D, "float32", False, vector=False),
        "v3": lambda: K.choose(D, "float32", False),
        "v4": lambda: K.choose(D, "float32", False),
    }[version]()
    if version == "v2" and cfg.kind == "looped":  # a row too long for scalar registers: say so
        raise ValueError(f"v2 holds the row in registers with scalar loads and cannot take D = {D}")
    if version == "v3" and cfg.kind != "rows":
        raise ValueError(f"v3 is a single-block kernel and cannot take D = {D}")
    return api.layer_norm_forward(x, gamma, beta, eps, _config=cfg, _onepass=version == "v3")[0]


def backward(version: str, dy, x, gamma, beta, eps: float = 1e-5):
    """(dx, dgamma, dbeta) with ``version`` in :data:`BACKWARD` (float32 CuPy arrays, shape (M, D))."""
    if version == "b1":
        _, cache = api.layer_norm_forward(x, gamma, beta, eps)
        return api.layer_norm_backward(dy, cache)
    _, mean, rstd = _v0_forward(x, gamma, beta, eps)
    return backward_unfused_rowsums(x, dy, gamma, mean, rstd)


def backward_unfused_rowsums(x, dy, gamma, mean, rstd):
    """The b0 kernels split out, for timing: per-row sums then dx with atomics (needs v0's mean/rstd)."""
    import cupy

    M, D = x.shape
    a = cupy.empty(M, cupy.float32)
    b = cupy.empty(M, cupy.float32)
    dx = cupy.empty_like(x)
    dgamma = cupy.zeros(D, cupy.float32)
    dbeta = cupy.zeros(D, cupy.float32)
    K.get_kernel("v0_bwd_rowsums", "versions")((M,), (256,), (x, dy, gamma, mean, rstd, a, b, np.int32(M), np.int32(D)))
    K.get_kernel("v0_bwd_dx", "versions")((math.ceil(M * D / 256),), (256,),
                                          (x, dy, gamma, mean, rstd, a, b, dx, dgamma, dbeta, np.int32(M), np.int32(D)))
    return dx, dgamma, dbeta


def v0_statistics(x, eps=1e-5):
    """The v0 mean and rstd (for b0's timing)."""
    import cupy

    M, D = x.shape
    g = cupy.ones(D, cupy.float32)
    _, mean, rstd = _v0_forward(x, g, cupy.zeros(D, cupy.float32), eps)
    return mean, rstd
