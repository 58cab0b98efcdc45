"""Compiling the CUDA sources and choosing a launch configuration for a row length.

Nothing here needs a GPU except :func:`get_kernel` and the launchers: :func:`compile_cubin` runs
NVRTC on the CPU (see :mod:`lnlib.cuda.nvrtc`), which is how CI checks that every kernel compiles for
sm_70, sm_75 and sm_90, and reads the compiled code's registers, spills and instructions.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = {"layernorm": HERE / "layernorm.cu", "versions": HERE / "versions.cu"}
OPTIONS = ("-std=c++17",)
#: kernel template argument for each storage dtype name
CTYPE = {"float32": "float", "float16": "half_t", "bfloat16": "bf16_t"}
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}

# Register budget: a thread keeps at most this many row elements (forward) or of each of x and dy
# (backward) in registers; longer rows are split over a cluster of blocks (sm_90) or looped over.
MAX_BYTES_PER_THREAD = 64  # of each array a thread keeps in registers: 16 float32 or 32 16-bit values
MAX_TPR = 1024
MAX_FLOATS_1024 = 32  # values a thread of a 1024-thread block can hold (x, or x and dy) without spilling
# Dynamic shared memory for the backward's dgamma/dbeta accumulators: at most this (chosen on an
# H100, where more would leave one block per SM), and never more than the device lets a block ask
# for, less STATIC_SMEM_RESERVE for the kernels' own reduction buffers (checked against ptxas'
# report by tests/test_cuda_compile.py).
SMEM_ACC_LIMIT = 160 * 1024
STATIC_SMEM_RESERVE = 2 * 1024


@dataclass(frozen=True)
class DeviceLimits:
    """What a GPU allows one launch: the inputs of :func:`choose`, read from the device at run time.

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


#: Rows the kernels can walk. Their row counters are 32-bit ints (64-bit counters cost registers, and
#: the measured kernels spill with them), so the launcher keeps every counter below 2**31: it refuses
#: more rows than this and sizes grids with :func:`forward_groups`. Element offsets are 64-bit.
MAX_ROWS = 2**31 - 2**21


def forward_groups(M: int, RPB: int) -> int:
    """Row groups (blocks, or clusters) for the forward's one-group-per-RPB-rows grid over M rows.

    A group starts at row ``first = g * RPB`` and steps by ``stride = groups * RPB``; its counter
    reaches at most ``M - 1 + stride``, so ``stride <= 2**31 - M`` keeps it a valid int. Below 2**30
    rows that never binds; above, the grid shrinks and every group walks more rows.
    """
    if not 0 <= M <= MAX_ROWS:
        raise ValueError(f"M must be between 0 and {MAX_ROWS} rows, got {M}")
    return max(1, min(math.ceil(M / RPB), (2**31 - M) // RPB))


def _acc_bytes(RPB: int, D: int, C: int) -> int:
    # a float dgamma and dbeta sum for each of a block's D // C columns, for each of its RPB rows
    return RPB * 2 * (D // C) * 4


def acc_smem_bytes(cfg: "RowConfig", D: int) -> int:
    """Dynamic shared memory of the backward's dgamma/dbeta accumulators for ``cfg`` (0 if looped)."""
    return 0 if cfg.kind == "looped" else _acc_bytes(cfg.RPB, D, cfg.C)


def source(name: str = "layernorm") -> str:
    """The CUDA C++ source text of ``name`` ('layernorm' or 'versions')."""
    return SOURCES[name].read_text()


def _compile(name_expressions, arch: str, source_name: str, ptx: bool, verbose: bool = False):
    from .nvrtc import nvrtc

    major = 12 if arch.endswith("_70") else 13  # NVRTC 13 no longer targets compute capability 7.0
    options = [f"--gpu-architecture={arch}", *OPTIONS] + (["--ptxas-options=-v"] if verbose else [])
    return nvrtc(major).compile(source(source_name), list(name_expressions), options, f"{source_name}.cu", ptx=ptx)


def compile_cubin(name_expressions, arch: str = "sm_90", source_name: str = "layernorm") -> bytes:
    """Compile the named template instances with NVRTC (no GPU needed) and return the cubin.

    ``arch`` is ``sm_70`` (compiled with NVRTC 12) or ``sm_75`` and newer (NVRTC 13). Raises
    RuntimeError with NVRTC's log if compilation fails.
    """
    return _compile(name_expressions, arch, source_name, ptx=False)[0]


def compile_report(name_expressions, arch: str = "sm_90", source_name: str = "layernorm"):
    """Compile as :func:`compile_cubin` and also say what the compiler made of each kernel.

    Returns ``(cubin, usage)`` with ``usage[name] = {"registers", "stack", "spill_stores",
    "spill_loads", "mangled"}`` for each name expression (from ptxas' verbose report).
    """
    from .nvrtc import ptxas_usage

    cubin, lowered, log = _compile(name_expressions, arch, source_name, ptx=False, verbose=True)
    by_mangled = ptxas_usage(log)
    return cubin, {n: {**by_mangled[m], "mangled": m} for n, m in lowered.items()}


def compile_ptx(name_expressions, arch: str = "compute_90", source_name: str = "layernorm") -> dict[str, str]:
    """The PTX of each named template instance (NVRTC, no GPU needed): ``{name: ptx text of its entry}``."""
    text, lowered, _ = _compile(name_expressions, arch, source_name, ptx=True)
    entries = re.split(r"(?=^\.(?:visible|weak) \.entry )", text, flags=re.M)
    return {n: next(e for e in entries if e.split("(", 1)[0].endswith(" " + low)) for n, low in lowered.items()}


@functools.lru_cache(maxsize=None)
def get_kernel(name_expression: str, source_name: str = "layernorm"):
    """The compiled ``cupy.RawKernel`` for one template instance (compiled once, then cached)."""
    import cupy

    module = cupy.RawModule(code=source(source_name), options=OPTIONS, name_expressions=[name_expression])
    return module.get_function(name_expression)


@dataclass(frozen=True)
class RowConfig:
    """How one row is spread over threads: see the template parameters in layernorm.cu."""

    kind: str  # 'rows' (register kernels), 'cluster' (sm_90, C blocks per row) or 'looped'
    VW: int = 1
    N: int = 1
    TPR: int = 32
    RPB: int = 1
    C: int = 1
    acc_regs: bool = True  # backward: dgamma/dbeta running sums in registers (else shared memory)
    # Variants measured by benchmarks/tune_variants.py and not chosen by default (yet):
    bufs: int = 1  # reduction slots: 2 alternates them, one barrier per reduction instead of two
    merge: bool = False  # forward, C > 1: merge the blocks' (mean, sum of squares) once per row
    blocks_per_sm: int = 0  # forward grid: 0 gives every row group its own block (or cluster); -1 as many as fit
    keep: bool = False  # gamma (and beta) loaded once per block and kept in registers: for persistent grids

    @property
    def threads(self) -> int:
        return 1024 if self.kind == "looped" else self.TPR * self.RPB


def _pow2ceil(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def choose(D: int, dtype: str, backward: bool, cc: int = 90, aligned: bool = True, vector: bool = True,
           limits: DeviceLimits | None = None) -> RowConfig:
    """Pick the kernel layout for rows of length ``D`` on a device with ``limits``.

    Threads per row grow with D so that each thread holds two 16-byte vectors of each array (enough
    loads in flight, few enough registers), up to four once a row fills 1024 threads; short rows share
    a block (RPB rows of TPR threads); longer rows are split over a cluster of C blocks where the
    device has clusters, or looped over elsewhere. The backward's accumulators are kept within the
    device's shared memory per block. The constants were measured on an H100 (benchmarks/tune.py,
    tune_long.py). A pure function: pass any :class:`DeviceLimits` (default: those of ``cc``).
    """
    return _choose(D, dtype, backward, aligned, vector, limits or limits_for(cc))


@functools.lru_cache(maxsize=8192)
def _choose(D: int, dtype: str, backward: bool, aligned: bool, vector: bool, limits: DeviceLimits) -> RowConfig:
    s = ITEMSIZE[dtype]
    budget = limits.acc_budget
    VW = 16 // s if (vector and aligned and D % (16 // s) == 0) else 1
    V = D // VW if VW > 1 else D
    cap = MAX_BYTES_PER_THREAD // s
    # two 16-byte vectors per thread and array (measured best on an H100, benchmarks/tune.py): enough
    # loads in flight per thread, few enough registers for many resident warps
    target = 32 // s
    TPR = min(MAX_TPR, _pow2ceil(math.ceil(V * VW / target)))
    TPR = max(1, min(TPR, _pow2ceil(V)))
    N = math.ceil(V / TPR)
    C = 1
    if not backward and s == 2 and TPR == MAX_TPR and 2 * N * VW * s <= MAX_BYTES_PER_THREAD:
        TPR, N = TPR // 2, 2 * N  # 16-bit forward: fewer threads with more each measured faster
    # A 1024-thread block gets at most 64 registers a thread: where a thread would hold more values
    # than these, the compiler spills them (found on the compiled code by tests/test_cuda_compile.py;
    # scalar loads need more address registers, so the scalar forward is held to half)
    held = N * VW * (2 if backward else 1)
    spills = TPR == MAX_TPR and (held > MAX_FLOATS_1024 if VW > 1 else not backward and N > MAX_FLOATS_1024 // 2)
    if N * VW > cap or spills:
        if not limits.clusters or VW == 1:
            return RowConfig("looped")
        # split the row over a cluster of C blocks of 512 threads (measured: benchmarks/tune_long.py)
        TPR = 512
        C = next((c for c in (2, 4, 8) if D % (c * VW) == 0 and math.ceil(V / c / TPR) * VW <= cap), 0)
        if not C:
            return RowConfig("looped")
        N = math.ceil(V / C / TPR)
    RPB = max(1, min(32, 128 // TPR)) if C == 1 else 1  # blocks of 128 threads for short rows
    if backward:  # the accumulators of all RPB row groups must fit in shared memory
        while RPB > 1 and _acc_bytes(RPB, D, C) > budget:
            RPB //= 2
        if _acc_bytes(1, D, C) > budget:
            if not limits.clusters:
                return RowConfig("looped")
            C2 = next((c for c in (2, 4, 8) if c > C and D % (c * VW) == 0 and _acc_bytes(1, D, c) <= budget), 0)
            if not C2:
                return RowConfig("looped")
            C, TPR = C2, 512
            N = math.ceil(V / C / TPR)
    # dgamma/dbeta running sums in shared memory measured as fast as registers or faster, and they
    # leave the registers to the row
    return RowConfig("cluster" if C > 1 else "rows", VW, N, TPR, RPB, C, acc_regs=False)


def _tail(*args) -> str:
    """Trailing template arguments, dropping those equal to their defaults (so names stay as they were)."""
    args = list(args)
    while args and args[-1][0] == args[-1][1]:
        args.pop()
    return "".join(f", {str(v).lower()}" for v, _ in args)


def forward_name(dtype: str, cfg: RowConfig, onepass: bool = False) -> str:
    t = CTYPE[dtype]
    if cfg.kind == "looped":
        return f"ln_fwd_looped<{t}, 1024>"
    if cfg.kind == "cluster":
        tail = _tail((cfg.bufs, 1), (cfg.merge, False), (cfg.keep, False))
        return f"ln_fwd_cluster<{t}, {cfg.VW}, {cfg.N}, {cfg.TPR}, {cfg.C}{tail}>"
    if cfg.merge:
        raise ValueError("merge applies to cluster kernels only")
    tail = _tail((cfg.bufs, 1), (cfg.keep, False))
    return f"ln_fwd<{t}, {cfg.VW}, {cfg.N}, {cfg.TPR}, {cfg.RPB}, {'true' if onepass else 'false'}{tail}>"


def backward_name(dtype: str, cfg: RowConfig) -> str:
    t = CTYPE[dtype]
    if cfg.kind == "looped":
        return f"ln_bwd_looped<{t}, 1024>"
    acc = "true" if cfg.acc_regs else "false"
    tail = _tail((cfg.bufs, 1), (cfg.keep, False))
    if cfg.kind == "cluster":
        return f"ln_bwd_cluster<{t}, {cfg.VW}, {cfg.N}, {cfg.TPR}, {cfg.C}, {acc}{tail}>"
    return f"ln_bwd<{t}, {cfg.VW}, {cfg.N}, {cfg.TPR}, {cfg.RPB}, {acc}{tail}>"


def kernel_name(dtype: str, cfg: RowConfig, backward: bool) -> str:
    """The template instance that runs ``cfg``: :func:`backward_name` or :func:`forward_name`."""
    return backward_name(dtype, cfg) if backward else forward_name(dtype, cfg)


#: the benchmark's row lengths, where the variants are measured
BENCH_D = (256, 1024, 4096, 8192, 16384, 65536)


def variants(D: int, dtype: str, backward: bool, cc: int = 90) -> list[RowConfig]:
    """The chooser's layout for D and the variants of it that benchmarks/tune_variants.py measures."""
    base = choose(D, dtype, backward, cc)
    if base.kind == "looped":
        return [base]
    out = [base, replace(base, bufs=2)]
    # keep: gamma/beta in registers (the compiler also hoists their conversion out of the row loop),
    # not with 1024-thread blocks, whose 64-register cap would spill
    keep = base.threads <= 512
    if backward:  # the backward's grid is persistent already
        out += [replace(base, bufs=2, keep=True)] if keep else []
    elif base.kind == "rows":
        # keep without a persistent grid: gamma and beta are loaded with x, not after the reductions
        # (the SASS of the default kernel shows them loaded, and waited for, just before y is stored)
        out += [replace(base, bufs=2, keep=True)] if keep else []
        out.append(replace(base, bufs=2, keep=keep, blocks_per_sm=-1))
    else:
        out += [replace(base, merge=True), replace(base, bufs=2, merge=True),
                replace(base, bufs=2, merge=True, blocks_per_sm=2), replace(base, bufs=2, merge=True, blocks_per_sm=4),
                replace(base, bufs=2, merge=True, blocks_per_sm=2, keep=True)]
    if cc >= 90 and base.TPR >= 512 and base.C < 8 and base.VW > 1 and D % (2 * base.C * base.VW) == 0:
        # the row over twice the blocks of 512 threads: fewer registers and (backward) half the
        # shared-memory accumulators per block, so more blocks resident per SM and more loads in flight
        C = 2 * base.C
        split = replace(base, kind="cluster", C=C, TPR=512, RPB=1, N=math.ceil(D // base.VW / C / 512), bufs=2)
        out += [split] if backward else [split, replace(split, merge=True)]
    return out


#: The row lengths whose chosen layouts are compiled and checked (tests/test_cuda_limits.py): every D
#: up to 4096, then a dense sample to 2**18 (where the register and cluster layouts end), then powers
#: of two and their neighbours to 2**20.
INSTANCE_DS = tuple(sorted(
    set(range(1, 4097)) | set(range(4096, 2**18 + 1, 97)) | {3 * 2**k for k in range(19)}
    | {2**k + d for k in range(12, 21) for d in (-8, -1, 0, 1, 8)} | {100003}
))


@functools.lru_cache(maxsize=None)
def all_instances(cc: int = 90, with_variants: bool = True) -> list[str]:
    """Every template instance the chooser picks for D in :data:`INSTANCE_DS` and the supported
    dtypes on a GPU of compute capability ``cc``, and (``with_variants``) the :func:`variants`
    measured at the benchmark's row lengths."""
    names = set()
    for dtype in CTYPE:
        names.update({f"ln_col_sum<{CTYPE[dtype]}>", f"ln_bwd_params_looped<{CTYPE[dtype]}>"})
        for D in INSTANCE_DS:
            for vector in (True, False):
                for backward in (False, True):
                    names.add(kernel_name(dtype, choose(D, dtype, backward, cc, vector=vector), backward))
        names.add(forward_name(dtype, choose(4096, dtype, False, cc), onepass=True))
        for D in BENCH_D if with_variants else ():
            for backward in (False, True):
                names.update(kernel_name(dtype, v, backward) for v in variants(D, dtype, backward, cc))
    return sorted(names)
