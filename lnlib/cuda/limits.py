"""Every limit and tolerance of :mod:`lnlib.cuda`, each defined once and imported where it is used.

Three kinds: what a GPU allows one launch (:class:`DeviceLimits`, read from the device at run time,
with the published values of each compute capability in :data:`KNOWN_LIMITS`); what the kernels of
``layernorm.cu`` assume or were tuned to (bytes a thread keeps in registers, shared memory for the
backward's accumulators, 32-bit row counters, the looped kernels' block); and the accuracy every
check of the GPU code asks for (:data:`TOL`). The tests, the benchmarks in ``benchmarks/`` and the
book's GPU chapter import these instead of writing the numbers again.

Examples
--------
>>> limits_for(86).threads_per_sm, limits_for(90).clusters
(1536, True)
>>> TOL["float32"]
(5e-06, 2e-05)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = [
    "ITEMSIZE", "VECTOR_BYTES", "MAX_THREADS", "MAX_BYTES_PER_THREAD", "MAX_REGS_1024", "MAX_FLOATS_1024",
    "SMEM_ACC_LIMIT",
    "STATIC_SMEM_RESERVE", "DEFAULT_DYNAMIC_SMEM", "MAX_ROWS", "INT_MAX", "LOOPED_THREADS", "LOOPED_BLOCKS_PER_SM",
    "PARAM_TILE", "MAX_PARAM_PARTS", "SPILL_ALLOWANCE", "TOL", "DeviceLimits", "KNOWN_LIMITS", "limits_for",
    "device_limits",
]

#: bytes of one element of each storage dtype
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
#: one vector load or store (a float4, or eight 16-bit values), and the alignment it needs
VECTOR_BYTES = 16
#: threads of one block, on every GPU since compute capability 2.0
MAX_THREADS = 1024
# Register budget: a thread keeps at most this many bytes of the row (forward) or of each of x and dy
# (backward) in registers, 16 float32 or 32 16-bit values; longer rows are split over a cluster of
# blocks (sm_90) or looped over.
MAX_BYTES_PER_THREAD = 64
#: registers a thread of a 1024-thread block can have: 65536 per SM / 1024 threads
MAX_REGS_1024 = 64
#: values a thread of a 1024-thread block can hold (x, or x and dy) without spilling: its
#: MAX_REGS_1024 registers also hold addresses and sums
MAX_FLOATS_1024 = 32
# Dynamic shared memory for the backward's dgamma/dbeta accumulators: at most this (chosen on an
# H100, where more would leave one block per SM), and never more than the device lets a block ask
# for, less STATIC_SMEM_RESERVE for the kernels' own reduction buffers (checked against ptxas'
# report by tests/test_cuda_limits.py).
SMEM_ACC_LIMIT = 160 * 1024
STATIC_SMEM_RESERVE = 2 * 1024
#: dynamic shared memory a block may use without opting in (cudaFuncAttributeMaxDynamicSharedMemorySize)
DEFAULT_DYNAMIC_SMEM = 48 * 1024
#: the largest int of the kernels' 32-bit row and column counters
INT_MAX = 2**31 - 1
#: Rows the kernels can walk. Their row counters are 32-bit ints (64-bit counters cost registers, and
#: the measured kernels spill with them), so the launcher keeps every counter below 2**31: it refuses
#: more rows than this and sizes grids with :func:`lnlib.cuda.kernels.forward_groups`. Element
#: offsets are 64-bit.
MAX_ROWS = 2**31 - 2**21
#: threads of a block of the looped kernels (the template argument NT of ln_fwd_looped, ln_bwd_looped)
LOOPED_THREADS = 1024
#: the looped kernels' grid: this many blocks per SM, each walking rows with a grid stride
LOOPED_BLOCKS_PER_SM = 8
#: ln_col_sum and ln_bwd_params_looped run (PARAM_TILE, PARAM_TILE) blocks of PARAM_TILE columns
PARAM_TILE = 32
#: the looped backward's partial rows of dgamma and dbeta: at most this many
MAX_PARAM_PARTS = 64
#: Bytes a chosen kernel may spill: the few values ptxas parks in local memory because the IEEE
#: division and square root call a slow-path subroutine (stored once, reloaded at most once a row),
#: never the row itself.
SPILL_ALLOWANCE = 16

#: The accuracy every GPU check asks for, per storage dtype: ``(y, gradients)`` bounds on
#: max |error| / max |exact| against a float64 or long-double reference on the same inputs. float32:
#: a few units of float32's epsilon (1.2e-7) times the row's condition; 16-bit: one or two units in
#: the last place of the stored result.
TOL = {"float32": (5e-6, 2e-5), "float16": (2**-10, 2**-9), "bfloat16": (2**-7, 2**-6)}


@dataclass(frozen=True)
class DeviceLimits:
    """What a GPU allows one launch: the inputs of :func:`lnlib.cuda.kernels.choose`, read from the
    device at run time.

    Attributes
    ----------
    cc : int
        Compute capability as 10 * major + minor (75 for a T4, 90 for an H100).
    smem_per_block_optin : int
        Bytes of shared memory (static + dynamic) one block may use once it opts in.
    smem_per_sm : int
        Bytes of shared memory of one SM.
    regs_per_sm : int
        32-bit registers of one SM (a block of T threads using R registers each needs R * T).
    sm_count : int
    clusters : bool
        Whether thread-block clusters can be launched (compute capability 9.0 and newer).
    threads_per_sm : int
        Threads one SM holds at once (1024 on sm_75, 1536 on sm_86/sm_89, 2048 on the others).
    """

    cc: int
    smem_per_block_optin: int
    smem_per_sm: int
    regs_per_sm: int
    sm_count: int
    clusters: bool
    threads_per_sm: int = 2048

    def resident_blocks(self, threads: int, registers: int, smem: int) -> int:
        """Blocks of ``threads`` threads using ``registers`` each and ``smem`` bytes of dynamic shared
        memory that one SM holds at once (at least 1, at most 32)."""
        by_regs = self.regs_per_sm // (registers * threads)
        by_threads = self.threads_per_sm // threads
        by_smem = self.smem_per_block_optin // smem if smem else 32
        return max(1, min(by_regs, by_threads, by_smem, 32))

    @property
    def acc_budget(self) -> int:
        """Bytes of dynamic shared memory the backward's accumulators may take on this device."""
        return min(SMEM_ACC_LIMIT, self.smem_per_block_optin - STATIC_SMEM_RESERVE)


#: The published limits of each compute capability (CUDA C++ Programming Guide, "Technical
#: Specifications per Compute Capability") with the SM count of one common GPU of each: for tests
#: and for reasoning about a GPU you do not have. At run time the device's own values are used.
KNOWN_LIMITS = {
    70: DeviceLimits(70, 96 * 1024, 96 * 1024, 65536, 80, False, 2048),  # V100
    75: DeviceLimits(75, 64 * 1024, 64 * 1024, 65536, 40, False, 1024),  # T4 (Colab)
    80: DeviceLimits(80, 163 * 1024, 164 * 1024, 65536, 108, False, 2048),  # A100
    86: DeviceLimits(86, 99 * 1024, 100 * 1024, 65536, 72, False, 1536),  # A10
    89: DeviceLimits(89, 99 * 1024, 100 * 1024, 65536, 58, False, 1536),  # L4
    90: DeviceLimits(90, 227 * 1024, 228 * 1024, 65536, 132, True, 2048),  # H100 SXM
}


def limits_for(cc: int) -> DeviceLimits:
    """The :data:`KNOWN_LIMITS` of ``cc``, or of the newest known capability below it."""
    known = [c for c in KNOWN_LIMITS if c <= cc]
    if not known:
        raise ValueError(f"cc must be a compute capability of at least 70 (Volta), got {cc}")
    return KNOWN_LIMITS[max(known)]


@functools.lru_cache(maxsize=None)
def device_limits(device: int = 0) -> DeviceLimits:
    """The limits of CUDA device ``device``, read from the device (needs CuPy and a GPU)."""
    import cupy

    get = cupy.cuda.runtime.deviceGetAttribute
    rt = cupy.cuda.runtime
    major = get(rt.cudaDevAttrComputeCapabilityMajor, device)
    minor = get(rt.cudaDevAttrComputeCapabilityMinor, device)
    return DeviceLimits(
        cc=10 * major + minor,
        smem_per_block_optin=get(97, device),  # cudaDevAttrMaxSharedMemoryPerBlockOptin
        smem_per_sm=get(81, device),  # cudaDevAttrMaxSharedMemoryPerMultiprocessor
        regs_per_sm=get(82, device),  # cudaDevAttrMaxRegistersPerMultiprocessor
        sm_count=get(rt.cudaDevAttrMultiProcessorCount, device),
        clusters=major >= 9,
        threads_per_sm=get(39, device),  # cudaDevAttrMaxThreadsPerMultiProcessor
    )
