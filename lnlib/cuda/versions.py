"""Launchers for the kernels of chapter 10, ``versions.cu``: LayerNorm one idea at a time (float32).

:data:`VERSIONS` is the one registry of the book's versions: what each adds, its kernels (described
in :mod:`lnlib.cuda.families`), the sections of ``versions.cu`` that hold its code, the longest row
it takes, and the name the benchmark records it under. ``FORWARD``, ``BACKWARD``, ``SAVED_BY``,
``MAX_D`` and ``BLOCK_N`` are views of it.

>>> for v in VERSIONS.values():
...     print(f"{v.key}  {v.adds}")
v0  the unfused design found in typical tutorials: three launches, x read three times
v1  one kernel, one block per row looping over the row in memory; one-pass statistics
v2  the row held in registers, threads per row sized to D, scalar loads: x read once
v3  as v2 with 16-byte (float4) loads and stores
v4  as v3 with the shifted two-pass statistics of chapter 6
b0  backward, unfused: the row sums, then dx with atomicAdd for dgamma and dbeta
b1  backward, fused: one pass per row, per-block dgamma/dbeta partials summed in a fixed order

Supported row lengths (a ValueError names the limit): v0, v1 and b0 any D; the register kernels up to
``MAX_D``, v3 and v4 only multiples of 4. ``lnlib.cuda`` (layernorm.cu) takes any D.

>>> MAX_D
{'v2': 16384, 'v3': 16384, 'v4': 16384, 'b1': 8192}

Everything but :func:`launch_config` and :func:`instances` needs CuPy and a GPU.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from . import families as F
from . import kernels as K
from .limits import MAX_THREADS, VECTOR_BYTES

__all__ = ["Version", "VERSIONS", "FORWARD", "BACKWARD", "SAVED_BY", "MAX_D", "launch_config", "instances",
           "forward", "backward", "gradients"]


@dataclass(frozen=True)
class Version:
    """One version of chapter 10.

    Attributes
    ----------
    key : str
        'v0' ... 'v4' (forward), 'b0', 'b1' (backward).
    adds : str
        What it adds to the one before.
    kernels : tuple of lnlib.cuda.families.Family
        Its kernels, in the order they are launched.
    sections : tuple of str
        The ``// BEGIN name`` sections of ``versions.cu`` with the code it adds (the chapter shows them).
    block_n : tuple of int
        The register kernels' values (or vectors) per thread, the template argument ``N``, that are
        compiled; empty for the kernels that loop over the row and take any D.
    vector : bool
        16-byte (float4) loads: D a multiple of 4 and the arrays 16-byte aligned.
    saved_by : str or None
        Backward: the forward whose saved statistics it reads.
    fixed : dict
        Template arguments the launcher fixes (v0: ``BROKEN=False``, the fixed reduction).
    """

    key: str
    adds: str
    kernels: tuple[F.Family, ...]
    sections: tuple[str, ...]
    block_n: tuple[int, ...] = ()
    vector: bool = False
    saved_by: str | None = None
    fixed: dict = field(default_factory=dict, compare=False)

    @property
    def backward(self) -> bool:
        return self.saved_by is not None

    @property
    def max_D(self) -> int | None:
        """The longest row, for the register kernels: the most values a thread holds in a block of
        :data:`~lnlib.cuda.limits.MAX_THREADS` threads (16 floats; b1 holds four arrays, x_hat, g
        and the two running sums, so 8 of each)."""
        if not self.block_n:
            return None
        return MAX_THREADS * max(self.block_n) * (4 if self.vector else 1)  # 4 floats a float4

    @property
    def impl(self) -> str:
        """The implementation's name in the benchmark's results (``benchmarks/gpu.py --versions``)."""
        return f"lnlib.{self.key}"


#: The book's versions, in the chapter's order.
VERSIONS = {v.key: v for v in (
    Version("v0", "the unfused design found in typical tutorials: three launches, x read three times",
            (F.V0_MEAN, F.V0_RSTD, F.V0_NORMALIZE), ("v0-reduction", "v0"), fixed={"BROKEN": False}),
    Version("v1", "one kernel, one block per row looping over the row in memory; one-pass statistics",
            (F.V1_FORWARD,), ("block-sum", "v1")),
    Version("v2", "the row held in registers, threads per row sized to D, scalar loads: x read once",
            (F.V2_FORWARD,), ("v2",), block_n=(1, 2, 4, 8, 16)),
    Version("v3", "as v2 with 16-byte (float4) loads and stores",
            (F.V3_FORWARD,), ("float4", "v3"), block_n=(1, 2, 4), vector=True),
    Version("v4", "as v3 with the shifted two-pass statistics of chapter 6",
            (F.V4_FORWARD,), ("v4",), block_n=(1, 2, 4), vector=True),
    Version("b0", "backward, unfused: the row sums, then dx with atomicAdd for dgamma and dbeta",
            (F.B0_ROWSUMS, F.B0_DX), ("b0",), saved_by="v0"),
    Version("b1", "backward, fused: one pass per row, per-block dgamma/dbeta partials summed in a fixed order",
            (F.B1_BACKWARD, F.B1_SUM_PARTIALS), ("b1",), block_n=(1, 2, 4, 8), saved_by="v4"),
)}
FORWARD = tuple(k for k, v in VERSIONS.items() if not v.backward)
BACKWARD = tuple(k for k, v in VERSIONS.items() if v.backward)
#: the forward whose saved statistics each backward reads (b0: the mean; b1: mean(x - x[0]))
SAVED_BY = {k: v.saved_by for k, v in VERSIONS.items() if v.backward}
#: the longest row each register kernel takes
MAX_D = {k: v.max_D for k, v in VERSIONS.items() if v.max_D}
BLOCK_N = {k: v.block_n for k, v in VERSIONS.items() if v.block_n}
THREADS = 256  # the looping kernels' block (v0, v1, b0)
VALUES_PER_THREAD = 8  # the register kernels' target: two float4 vectors, or 8 scalars, a thread


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
    v = VERSIONS.get(version)
    if v is None:
        raise ValueError(f"version must be one of {tuple(VERSIONS)}, got {version!r}")
    if D < 1:
        raise ValueError(f"D must be >= 1, got {D}")
    first = v.kernels[0]  # its name comes from the kernel's description, lnlib/cuda/families.py
    if not v.block_n:  # v0, v1, b0 loop over the row: the same block for any D
        return first.name(**v.fixed), THREADS
    if D > v.max_D:
        raise ValueError(f"{version} holds the row in registers and takes "
                         f"D <= {v.max_D}, got D = {D} "
                         "(lnlib.cuda.layer_norm_forward/backward take any D)")
    if v.vector and D % 4:
        raise ValueError(f"{version} loads 16 bytes (4 floats) at a time and needs D "
                         f"divisible by 4, got D = {D} (v2 takes any D <= {MAX_D['v2']})")
    per = 4 if v.vector else 1  # floats per load
    units = D // per  # float4 vectors or floats in a row
    threads = min(MAX_THREADS, 32 * math.ceil(D / (32 * VALUES_PER_THREAD)))
    N = _pow2ceil(math.ceil(units / threads))
    assert N in v.block_n and N * threads >= units
    return first.name(N=N), threads


def instances() -> list[str]:
    """Every kernel instance the launchers can use (compiled on the CPU by the test suite): each
    version's kernels with every ``N`` of its ``block_n`` and, for v0, both reductions."""
    names = []
    for v in VERSIONS.values():
        options = {"N": v.block_n, "BROKEN": (True, False)}  # BROKEN (v0): the tutorial's reduction, the fix
        for family in v.kernels:
            params = [p.name for p in family.params]
            for values in itertools.product(*(options[p] for p in params)):
                names.append(family.name(**dict(zip(params, values))))
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


def _launch(name: str, grid: int, block: int, args: tuple):
    """Launch kernel ``name`` of versions.cu on ``grid`` blocks of ``block`` threads. The arguments are
    checked against the kernel's description (lnlib/cuda/families.py) and converted to its C types:
    numpy.int32 for int, numpy.float32 for float (a Python int would go as 64 bits)."""
    family, _ = F.parse_name(name)
    _kernel(name)((grid,), (block,), family.launch_args(*args))


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
    if VERSIONS[version].vector and any(a.data.ptr % VECTOR_BYTES for a in (x, gamma, beta)):
        raise ValueError(f"{version} loads 16 bytes at a time: "
                         "x, gamma and beta must start on 16-byte boundaries")
    y = cupy.empty_like(x)
    mean = cupy.empty(M, cupy.float32)
    rstd = cupy.empty(M, cupy.float32)
    if M == 0:
        return y, mean, rstd
    if version == "v0":
        _launch(F.V0_MEAN.name(BROKEN=broken), M, threads, (x, mean, M, D))
        _launch(F.V0_RSTD.name(BROKEN=broken), M, threads, (x, mean, rstd, M, D, eps))
        grid = math.ceil(M * D / threads)  # one thread per element
        args = (x, gamma, beta, mean, rstd, y, M, D)
        _launch(F.V0_NORMALIZE.name(), grid, threads, args)
    else:  # one block per row
        _launch(name, M, threads, (x, gamma, beta, y, mean, rstd, D, eps))
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
        _launch(F.B0_ROWSUMS.name(), M, threads, (x, dy, gamma, mean, rstd, a, b, M, D))
        grid = math.ceil(M * D / threads)  # one thread per element
        args = (x, dy, gamma, mean, rstd, a, b, dx, dgamma, dbeta, M, D)
        _launch(F.B0_DX.name(), grid, threads, args)
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
    args = (x, dy, gamma, mean_shift, rstd, dx, part[0], part[1], M, D)
    _launch(name, P, threads, args)
    dgamma = cupy.empty(D, cupy.float32)
    dbeta = cupy.empty(D, cupy.float32)
    for p, out in ((part[0], dgamma), (part[1], dbeta)):  # one thread per column
        grid = math.ceil(D / 256)
        _launch(F.B1_SUM_PARTIALS.name(), grid, 256, (p, P, D, out))
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
