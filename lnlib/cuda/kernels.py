"""Compiling the CUDA sources, choosing a launch layout for a row length, and naming its kernel.

Nothing here needs a GPU except :func:`get_kernel`: :func:`compile_cubin` runs NVRTC on the CPU (see
:mod:`lnlib.cuda.nvrtc`), which is how CI checks that every kernel compiles for sm_70 to sm_90, and
reads the compiled code's registers, spills and instructions. Kernel names come from the
descriptions in :mod:`lnlib.cuda.families`; limits from :mod:`lnlib.cuda.limits`.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from . import families as F
from .families import CTYPE, Instance
from .limits import (  # noqa: F401 (KNOWN_LIMITS, DeviceLimits, SMEM_ACC_LIMIT, ... are used as K.* elsewhere)
    INT_MAX, ITEMSIZE, KNOWN_LIMITS, LOOPED_THREADS, MAX_BYTES_PER_THREAD, MAX_FLOATS_1024, MAX_ROWS, MAX_THREADS,
    SMEM_ACC_LIMIT, STATIC_SMEM_RESERVE, VECTOR_BYTES, DeviceLimits, device_limits, limits_for)

HERE = Path(__file__).resolve().parent
SOURCES = {"layernorm": HERE / "layernorm.cu", "versions": HERE / "versions.cu"}
OPTIONS = ("-std=c++17",)


def forward_groups(M: int, RPB: int) -> int:
    """Row groups (blocks, or clusters) for the forward's one-group-per-RPB-rows grid over M rows.

    A group starts at row ``first = g * RPB`` and steps by ``stride = groups * RPB``; its counter
    reaches at most ``M - 1 + stride``, so ``stride <= 2**31 - M`` keeps it a valid int. Below 2**30
    rows that never binds; above, the grid shrinks and every group walks more rows.
    """
    if not 0 <= M <= MAX_ROWS:
        raise ValueError(f"M must be between 0 and {MAX_ROWS} rows, got {M}")
    return max(1, min(math.ceil(M / RPB), (INT_MAX + 1 - M) // RPB))


def _acc_bytes(RPB: int, D: int, C: int) -> int:
    # a float dgamma and dbeta sum for each of a block's D // C columns, for each of its RPB rows
    return RPB * 2 * (D // C) * 4


def acc_smem_bytes(cfg: "RowConfig", D: int) -> int:
    """Dynamic shared memory of the backward's dgamma/dbeta accumulators for ``cfg`` (0 if looped)."""
    return 0 if cfg.kind == "looped" else _acc_bytes(cfg.RPB, D, cfg.C)


def _source_path(name) -> Path:
    """The file of a source: a key of :data:`SOURCES`, or the path of a ``.cu`` file."""
    return SOURCES[name] if name in SOURCES else Path(name)


def source(name="layernorm") -> str:
    """The CUDA C++ source text of ``name`` ('layernorm' or 'versions', or the path of a .cu file)."""
    return _source_path(name).read_text()


def _compile(name_expressions, arch: str, source_name, ptx: bool, verbose: bool = False):
    from .nvrtc import nvrtc

    major = 12 if arch.endswith("_70") else 13  # NVRTC 13 no longer targets compute capability 7.0
    options = [f"--gpu-architecture={arch}", *OPTIONS] + (["--ptxas-options=-v"] if verbose else [])
    return nvrtc(major).compile(source(source_name), list(name_expressions), options, _source_path(source_name).name,
                                ptx=ptx)


def compile_cubin(name_expressions, arch: str = "sm_90", source_name="layernorm") -> bytes:
    """Compile the named template instances with NVRTC (no GPU needed) and return the cubin.

    ``arch`` is ``sm_70`` (compiled with NVRTC 12) or ``sm_75`` and newer (NVRTC 13). Raises
    RuntimeError with NVRTC's log if compilation fails.
    """
    return _compile(name_expressions, arch, source_name, ptx=False)[0]


def compile_report(name_expressions, arch: str = "sm_90", source_name="layernorm"):
    """Compile as :func:`compile_cubin` and also say what the compiler made of each kernel.

    Returns ``(cubin, usage)`` with ``usage[name] = {"registers", "stack", "spill_stores",
    "spill_loads", "smem", "mangled"}`` for each name expression (from ptxas' verbose report).
    """
    from .nvrtc import ptxas_usage

    cubin, lowered, log = _compile(name_expressions, arch, source_name, ptx=False, verbose=True)
    by_mangled = ptxas_usage(log)
    return cubin, {n: {**by_mangled[m], "mangled": m} for n, m in lowered.items()}


def compile_ptx(name_expressions, arch: str = "compute_90", source_name="layernorm") -> dict[str, str]:
    """The PTX of each named template instance (NVRTC, no GPU needed): ``{name: ptx text of its entry}``."""
    text, lowered, _ = _compile(name_expressions, arch, source_name, ptx=True)
    entries = re.split(r"(?=^\.(?:visible|weak) \.entry )", text, flags=re.M)
    return {n: next(e for e in entries if e.split("(", 1)[0].endswith(" " + low)) for n, low in lowered.items()}


@functools.lru_cache(maxsize=None)
def get_kernel(name_expression: str, source_name="layernorm"):
    """The compiled ``cupy.RawKernel`` for one template instance (compiled once, then cached)."""
    import cupy

    module = cupy.RawModule(code=source(source_name), options=OPTIONS, name_expressions=[name_expression])
    return module.get_function(name_expression)


def kernel_of(instance: Instance):
    """:func:`get_kernel` of an :class:`~lnlib.cuda.families.Instance`, from its family's source."""
    return get_kernel(instance.name, instance.family.source)


@dataclass(frozen=True)
class RowConfig:
    """How one row is spread over threads: the template parameters of layernorm.cu's row kernels.

    Attributes
    ----------
    kind : str
        'rows' (ln_fwd, ln_bwd: the row in registers), 'cluster' (ln_fwd_cluster, ln_bwd_cluster:
        the row split over C blocks, sm_90) or 'looped' (ln_fwd_looped, ln_bwd_looped: any D).
    VW, N, TPR, RPB, C : int
        Elements per vector load, vectors per thread, threads per row, rows per block, blocks per row.
    """

    kind: str
    VW: int = 1
    N: int = 1
    TPR: int = 32
    RPB: int = 1
    C: int = 1

    @property
    def threads(self) -> int:
        return LOOPED_THREADS if self.kind == "looped" else self.TPR * self.RPB


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
    VW = VECTOR_BYTES // s if (vector and aligned and D % (VECTOR_BYTES // s) == 0) else 1
    V = D // VW if VW > 1 else D
    cap = MAX_BYTES_PER_THREAD // s
    # two 16-byte vectors per thread and array (measured best on an H100, benchmarks/tune.py): enough
    # loads in flight per thread, few enough registers for many resident warps
    target = 2 * VECTOR_BYTES // s
    TPR = min(MAX_THREADS, _pow2ceil(math.ceil(V * VW / target)))
    TPR = max(1, min(TPR, _pow2ceil(V)))
    N = math.ceil(V / TPR)
    C = 1
    if not backward and s == 2 and TPR == MAX_THREADS and 2 * N * VW * s <= MAX_BYTES_PER_THREAD:
        TPR, N = TPR // 2, 2 * N  # 16-bit forward: fewer threads with more each measured faster
    # A 1024-thread block gets at most 64 registers a thread: where a thread would hold more values
    # than these, the compiler spills them (found on the compiled code by tests/test_cuda_compile.py;
    # scalar loads need more address registers, so the scalar forward is held to half)
    held = N * VW * (2 if backward else 1)
    spills = TPR == MAX_THREADS and (held > MAX_FLOATS_1024 if VW > 1 else not backward and N > MAX_FLOATS_1024 // 2)
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
    return RowConfig("cluster" if C > 1 else "rows", VW, N, TPR, RPB, C)


#: the family that runs each kind of layout, forward and backward
FORWARD_FAMILY = {"rows": F.LN_FWD, "cluster": F.LN_FWD_CLUSTER, "looped": F.LN_FWD_LOOPED}
BACKWARD_FAMILY = {"rows": F.LN_BWD, "cluster": F.LN_BWD_CLUSTER, "looped": F.LN_BWD_LOOPED}


def layout_values(family: F.Family, dtype: str, cfg) -> dict:
    """The template arguments of ``family`` for storage ``dtype`` and layout ``cfg``: each is the
    layout's attribute of the parameter's name (``T`` is the dtype; ``NT``, the looped kernels'
    block, is :data:`~lnlib.cuda.limits.LOOPED_THREADS`)."""
    fixed = {"T": dtype, "NT": LOOPED_THREADS}
    return {p.name: fixed[p.name] if p.name in fixed else getattr(cfg, p.name) for p in family.params}


def layout_instance(family: F.Family, dtype: str, cfg) -> Instance:
    """The instance of ``family`` for storage ``dtype`` and layout ``cfg`` (:func:`layout_values`)."""
    return family.instance(**layout_values(family, dtype, cfg))


def forward_instance(dtype: str, cfg: RowConfig) -> Instance:
    """The forward kernel that runs ``cfg`` for storage ``dtype``.

    Examples
    --------
    >>> forward_instance("float32", choose(1024, "float32", False)).name
    'ln_fwd<float, 4, 2, 128, 1>'
    """
    return layout_instance(FORWARD_FAMILY[cfg.kind], dtype, cfg)


def backward_instance(dtype: str, cfg: RowConfig) -> Instance:
    """The backward kernel that runs ``cfg`` for storage ``dtype``.

    Examples
    --------
    >>> backward_instance("bfloat16", choose(65536, "bfloat16", True)).name
    'ln_bwd_cluster<bf16_t, 8, 4, 512, 4>'
    """
    return layout_instance(BACKWARD_FAMILY[cfg.kind], dtype, cfg)


def forward_name(dtype: str, cfg: RowConfig) -> str:
    """The name expression of :func:`forward_instance`."""
    return forward_instance(dtype, cfg).name


def backward_name(dtype: str, cfg: RowConfig) -> str:
    """The name expression of :func:`backward_instance`."""
    return backward_instance(dtype, cfg).name


def kernel_name(dtype: str, cfg: RowConfig, backward: bool) -> str:
    """The template instance that runs ``cfg``: :func:`backward_name` or :func:`forward_name`."""
    return backward_name(dtype, cfg) if backward else forward_name(dtype, cfg)


def col_sum_instance(dtype: str) -> Instance:
    """The backward's second stage for storage ``dtype``: partial rows of dgamma or dbeta, added."""
    return F.LN_COL_SUM.instance(T=dtype)


def params_looped_instance(dtype: str) -> Instance:
    """The looped backward's dgamma/dbeta partial rows for storage ``dtype``."""
    return F.LN_BWD_PARAMS_LOOPED.instance(T=dtype)


#: the benchmark's row lengths (benchmarks/gpu.py), where the chooser's picks are pinned by
#: tests/test_chooser.py and the experiments in benchmarks/experiments/ are measured
BENCH_D = (256, 1024, 4096, 8192, 16384, 65536)

#: The row lengths whose chosen layouts are compiled and checked (tests/test_cuda_limits.py): every D
#: up to 4096, then a dense sample to 2**18 (where the register and cluster layouts end), then powers
#: of two and their neighbours to 2**20.
INSTANCE_DS = tuple(sorted(
    set(range(1, 4097)) | set(range(4096, 2**18 + 1, 97)) | {3 * 2**k for k in range(19)}
    | {2**k + d for k in range(12, 21) for d in (-8, -1, 0, 1, 8)} | {100003}
))


@functools.lru_cache(maxsize=None)
def all_instances(cc: int = 90) -> list[str]:
    """Every template instance lnlib.cuda can launch on a GPU of compute capability ``cc``: the
    chooser's picks for D in :data:`INSTANCE_DS`, both directions, aligned or not, every supported
    dtype, and the backward's helper kernels."""
    names = set()
    for dtype in CTYPE:
        names.update({col_sum_instance(dtype).name, params_looped_instance(dtype).name})
        for D in INSTANCE_DS:
            for vector in (True, False):
                for backward in (False, True):
                    names.add(kernel_name(dtype, choose(D, dtype, backward, cc, vector=vector), backward))
    return sorted(names)
