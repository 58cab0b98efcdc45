"""Launchers for the kernels of chapter 10, ``versions.cu``: LayerNorm one idea at a time (float32).

=======  ==========================================================================================
version  what it adds
=======  ==========================================================================================
v0       the unfused design found in typical tutorials: three launches, x read three times
v1       one kernel, one block per row looping over the row in memory; one-pass statistics
v2       the row held in registers, threads per row sized to D, scalar loads: x read once
v3       as v2 with 16-byte (float4) loads and stores
v4       as v3 with the shifted two-pass statistics of chapter 6
b0       backward, unfused: the row sums, then dx with atomicAdd for dgamma and dbeta
b1       backward, fused: one pass per row, per-block dgamma/dbeta partials summed in a fixed order
=======  ==========================================================================================

Supported row lengths (a ValueError names the limit): v0, v1 and b0 any D; v2 D <= 16384; v3 and
v4 D <= 16384 and a multiple of 4; b1 D <= 8192. ``lnlib.cuda`` (layernorm.cu) takes any D.

Everything but :func:`launch_config` and :func:`instances` needs CuPy and a GPU.
"""

from __future__ import annotations

import math

import numpy as np

from . import kernels as K

__all__ = ["FORWARD", "BACKWARD", "SAVED_BY", "MAX_D", "launch_config", "instances", "forward", "backward",
           "gradients"]

FORWARD = ("v0", "v1", "v2", "v3", "v4")
BACKWARD = ("b0", "b1")
#: the forward whose saved statistics each backward reads (b0: the mean; b1: mean(x - x[0]))
SAVED_BY = {"b0": "v0", "b1": "v4"}
#: the longest row each register kernel takes: 16 values a thread of a 1024-thread block (b1 holds
#: four arrays, x_hat, g and the two running sums, so 8 of each)
MAX_D = {"v2": 16384, "v3": 16384, "v4": 16384, "b1": 8192}
THREADS = 256  # the looping kernels' block (v0, v1, b0)
VALUES_PER_THREAD = 8  # the register kernels' target: two float4 vectors, or 8 scalars, a thread
BLOCK_N = {"v2": (1, 2, 4, 8, 16), "v3": (1, 2, 4), "v4": (1, 2, 4), "b1": (1, 2, 4, 8)}


def _pow2ceil(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def launch_config(version: str, D: int) -> tuple[str, int]:
    """``(kernel, threads)``: the template instance that runs ``version`` for rows of length ``D``
    and its threads per block (for v0 and b0, the first of their kernels).

    The register kernels size the block to D: a multiple of 32 threads, at most 1024, so that each
    thread holds about 8 values (two float4 vectors for v3 and v4), and N values (or vectors) a
    thread, a power of two, cover the row.

    Raises
    ------
    ValueError
        If ``version`` is unknown or cannot take rows of length ``D``.

    Examples
    --------
    >>> launch_config("v2", 1000)
    ('v2_forward<8>', 128)
    >>> launch_config("v4", 4096)
    ('v4_forward<2>', 512)
    """
    if version not in FORWARD + BACKWARD:
        raise ValueError(f"version must be one of {FORWARD + BACKWARD}, got {version!r}")
    if D < 1:
        raise ValueError(f"D must be >= 1, got {D}")
    if version in ("v0", "v1", "b0"):
        first = {"v0": "v0_mean<false>", "v1": "v1_forward", "b0": "b0_rowsums"}
        return first[version], THREADS
    if D > MAX_D[version]:
        raise ValueError(f"{version} holds the row in registers and takes "
                         f"D <= {MAX_D[version]}, got D = {D} "
                         "(lnlib.cuda.layer_norm_forward/backward take any D)")
    vector = version in ("v3", "v4")
    if vector and D % 4:
        raise ValueError(f"{version} loads 16 bytes (4 floats) at a time and needs D "
                         f"divisible by 4, got D = {D} (v2 takes any D <= {MAX_D['v2']})")
    per = 4 if vector else 1  # floats per load
    units = D // per  # float4 vectors or floats in a row
    threads = min(1024, 32 * math.ceil(D / (32 * VALUES_PER_THREAD)))
    N = _pow2ceil(math.ceil(units / threads))
    assert N in BLOCK_N[version] and N * threads >= units
    name = "b1_backward" if version == "b1" else f"{version}_forward"
    return f"{name}<{N}>", threads


def instances() -> list[str]:
    """Every kernel instance the launchers can use (compiled on the CPU by the test suite)."""
    names = ["v0_mean<true>", "v0_mean<false>", "v0_rstd<true>", "v0_rstd<false>", "v0_normalize", "v1_forward",
             "b0_rowsums", "b0_dx", "b1_sum_partials"]
    for v, ns in BLOCK_N.items():
        names += [f"{'b1_backward' if v == 'b1' else v + '_forward'}<{n}>" for n in ns]
    return names


def _check(x, *params):
    import cupy

    if not isinstance(x, cupy.ndarray) or x.dtype != cupy.float32 or x.ndim != 2 or not x.flags.c_contiguous:
        raise TypeError(f"x must be a C-contiguous (M, D) cupy float32 array, got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    if x.shape[0] > 2**30:  # row indices are 32-bit ints in versions.cu
        raise ValueError(f"x must have at most 2**30 rows, got {x.shape[0]} (lnlib.cuda takes more)")
    for p in params:
        if not isinstance(p, cupy.ndarray) or p.dtype != cupy.float32 or p.shape != (x.shape[1],) \
                or not p.flags.c_contiguous:
            raise TypeError(f"gamma, beta must be contiguous cupy float32 arrays of shape ({x.shape[1]},)")
    return x.shape


def _kernel(name: str):
    return K.get_kernel(name, "versions")


def forward(version: str, x, gamma, beta, eps: float = 1e-5, *, broken: bool = False):
    """``(y, mean, rstd)`` of ``version`` (in :data:`FORWARD`) for a (M, D) float32 CuPy array.

    ``mean`` is each row's mean, except for v4, which saves ``mean(x - x[:, :1])`` as lnlib.cuda does
    (the row's mean is ``x[:, 0] + mean``). ``broken=True`` (v0 only) uses the tutorial's block
    reduction, which keeps the first warp's sum only.
    """
    import cupy

    M, D = _check(x, gamma, beta)
    if broken and version != "v0":
        raise ValueError("broken applies to v0 only")
    name, threads = launch_config(version, D)
    if version in ("v3", "v4") and any(a.data.ptr % 16 for a in (x, gamma, beta)):
        raise ValueError(f"{version} loads 16 bytes at a time: "
                         "x, gamma and beta must start on 16-byte boundaries")
    y = cupy.empty_like(x)
    mean = cupy.empty(M, cupy.float32)
    rstd = cupy.empty(M, cupy.float32)
    if M == 0:
        return y, mean, rstd
    m, d, e = np.int32(M), np.int32(D), np.float32(eps)
    if version == "v0":
        b = "true" if broken else "false"
        _kernel(f"v0_mean<{b}>")((M,), (threads,), (x, mean, m, d))
        _kernel(f"v0_rstd<{b}>")((M,), (threads,), (x, mean, rstd, m, d, e))
        grid = math.ceil(M * D / threads)  # one thread per element
        args = (x, gamma, beta, mean, rstd, y, m, d)
        _kernel("v0_normalize")((grid,), (threads,), args)
    else:  # one block per row
        _kernel(name)((M,), (threads,), (x, gamma, beta, y, mean, rstd, d, e))
    return y, mean, rstd


def _resident_blocks(name: str, threads: int) -> int:
    """Blocks of ``threads`` threads the GPU holds at once, by threads and registers per SM."""
    import cupy

    from . import api

    sms = api._sm_count(cupy.cuda.Device().id)
    regs = _kernel(name).num_regs
    regs = -(-max(1, regs) // 8) * 8  # registers are handed out 8 at a time
    return sms * max(1, min(2048 // threads, 65536 // (regs * threads), 32))


def backward(version: str, dy, x, gamma, mean, rstd):
    """``(dx, dgamma, dbeta)`` of ``version`` (in :data:`BACKWARD`), from the statistics saved by the
    forward ``SAVED_BY[version]`` (b1 also takes those of lnlib.cuda.layer_norm_forward's cache,
    ``cache.mean_shift`` and ``cache.rstd``, which are the same quantities)."""
    import cupy

    M, D = _check(x, gamma)
    if dy.shape != x.shape or dy.dtype != x.dtype or not dy.flags.c_contiguous:
        raise TypeError(f"dy must be a contiguous float32 array of x's shape {x.shape}")
    if any(getattr(t, "shape", None) != (M,) or getattr(t, "dtype", None) != cupy.float32 for t in (mean, rstd)):
        raise TypeError(f"mean and rstd must be the float32 arrays of shape ({M},) that the forward saved")
    launch_config(version, D)  # a ValueError for an unknown version or a row too long
    run = _backward_b0 if version == "b0" else _backward_b1
    return run(dy, x, gamma, mean, rstd)


def _backward_b0(dy, x, gamma, mean, rstd):
    """b0: the row sums (one block per row), then dx and the atomics (one thread per element)."""
    import cupy

    M, D = x.shape
    threads = THREADS
    dx = cupy.empty_like(x)
    dgamma = cupy.zeros(D, cupy.float32)  # zeros: the atomics add into them
    dbeta = cupy.zeros(D, cupy.float32)
    a = cupy.empty(M, cupy.float32)  # each row's mean of g = gamma * dy
    b = cupy.empty(M, cupy.float32)  # and of g * x_hat
    if M:
        m, d = np.int32(M), np.int32(D)
        _kernel("b0_rowsums")((M,), (threads,), (x, dy, gamma, mean, rstd, a, b, m, d))
        grid = math.ceil(M * D / threads)  # one thread per element
        args = (x, dy, gamma, mean, rstd, a, b, dx, dgamma, dbeta, m, d)
        _kernel("b0_dx")((grid,), (threads,), args)
    return dx, dgamma, dbeta


def _backward_b1(dy, x, gamma, mean_shift, rstd):
    """b1: a persistent grid of P blocks, then the fixed-order sum of the (P, D) partial rows."""
    import cupy

    M, D = x.shape
    name, threads = launch_config("b1", D)
    dx = cupy.empty_like(x)
    if M == 0:
        return dx, cupy.zeros(D, cupy.float32), cupy.zeros(D, cupy.float32)
    P = min(M, _resident_blocks(name, threads))  # as many blocks as the GPU holds at once
    part = cupy.empty((2, P, D), cupy.float32)  # block p writes row p of both
    m, d = np.int32(M), np.int32(D)
    args = (x, dy, gamma, mean_shift, rstd, dx, part[0], part[1], m, d)
    _kernel(name)((P,), (threads,), args)
    dgamma = cupy.empty(D, cupy.float32)
    dbeta = cupy.empty(D, cupy.float32)
    for p, out in ((part[0], dgamma), (part[1], dbeta)):  # one thread per column
        grid = math.ceil(D / 256)
        _kernel("b1_sum_partials")((grid,), (256,), (p, np.int32(P), d, out))
    return dx, dgamma, dbeta


def gradients(version: str, dy, x, gamma, beta, eps: float = 1e-5):
    """``(dx, dgamma, dbeta)``: the forward ``SAVED_BY[version]`` for the statistics, then
    :func:`backward`. For b1 with D not a multiple of 4 (which v4 does not take) the statistics come
    from lnlib.cuda.layer_norm_forward, which saves the same ones."""
    fwd = SAVED_BY[version] if version in SAVED_BY else None
    if fwd is None:
        raise ValueError(f"version must be one of {BACKWARD}, got {version!r}")
    if fwd == "v4" and x.shape[1] % 4:
        from . import api

        _, cache = api.layer_norm_forward(x, gamma, beta, eps)
        mean, rstd = cache.mean_shift, cache.rstd
    else:
        _, mean, rstd = forward(fwd, x, gamma, beta, eps)
    return backward(version, dy, x, gamma, mean, rstd)
