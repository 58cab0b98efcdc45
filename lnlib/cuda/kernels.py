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
SMEM_ACC_LIMIT = 160 * 1024  # dynamic shared memory for the backward's dgamma/dbeta accumulators


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


@functools.lru_cache(maxsize=4096)
def choose(D: int, dtype: str, backward: bool, cc: int = 90, aligned: bool = True, vector: bool = True) -> RowConfig:
    """Pick the kernel layout for rows of length ``D``.

    Threads per row grow with D so that each thread holds two 16-byte vectors of each array (enough
    loads in flight, few enough registers), up to four once a row fills 1024 threads; short rows share
    a block (RPB rows of TPR threads); longer rows are split over a cluster of C blocks on sm_90, or
    looped over elsewhere. The constants were measured on an H100 (benchmarks/tune.py, tune_long.py).
    """
    s = ITEMSIZE[dtype]
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
        if cc < 90 or VW == 1:
            return RowConfig("looped")
        # split the row over a cluster of C blocks of 512 threads (measured: benchmarks/tune_long.py)
        TPR = 512
        C = next((c for c in (2, 4, 8) if D % (c * VW) == 0 and math.ceil(V / c / TPR) * VW <= cap), 0)
        if not C:
            return RowConfig("looped")
        N = math.ceil(V / C / TPR)
    RPB = max(1, min(32, 128 // TPR)) if C == 1 else 1  # blocks of 128 threads for short rows
    if backward:  # the accumulators of all RPB row groups must fit in shared memory
        while RPB > 1 and RPB * 2 * (D // C) * 4 > SMEM_ACC_LIMIT:
            RPB //= 2
        if 2 * (D // C) * 4 > SMEM_ACC_LIMIT:
            if cc < 90:
                return RowConfig("looped")
            C2 = next((c for c in (2, 4, 8) if c > C and D % (c * VW) == 0 and 2 * (D // c) * 4 <= SMEM_ACC_LIMIT), 0)
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


def all_instances(cc: int = 90, with_variants: bool = True) -> list[str]:
    """Every template instance the chooser can pick for D in 1..2**20 and the supported dtypes, and
    (``with_variants``) the :func:`variants` measured at the benchmark's row lengths."""
    names = set()
    for dtype in CTYPE:
        names.update({f"ln_col_sum<{CTYPE[dtype]}>", f"ln_bwd_params_looped<{CTYPE[dtype]}>"})
        Ds = set(range(1, 65)) | {2**k for k in range(21)} | {3 * 2**k for k in range(19)} | {2**k + 8 for k in range(4, 20)}
        Ds |= {100, 250, 300, 1000, 100003}
        for D in sorted(Ds):
            for vector in (True, False):
                for backward in (False, True):
                    names.add(kernel_name(dtype, choose(D, dtype, backward, cc, vector=vector), backward))
        names.add(forward_name(dtype, choose(4096, dtype, False, cc), onepass=True))
        for D in BENCH_D if with_variants else ():
            for backward in (False, True):
                names.update(kernel_name(dtype, v, backward) for v in variants(D, dtype, backward, cc))
    return sorted(names)
