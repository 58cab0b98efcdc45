"""One description of each CUDA kernel family: its template parameters and its arguments.

A *family* is one ``__global__`` function template of ``layernorm.cu`` or ``versions.cu``; an
*instance* is one set of template arguments, named by a *name expression* such as
``ln_fwd<float, 4, 2, 128, 1>``, which NVRTC compiles and CuPy launches. Everything that names or
launches a kernel derives from the :class:`Family` written here: the name expressions
(:meth:`Family.name`), the lists of instances the tests compile (:func:`lnlib.cuda.kernels.all_instances`,
:func:`lnlib.cuda.versions.instances`) and the order and C types of the launch arguments
(:meth:`Family.launch_args`). ``tests/test_kernel_registry.py`` parses every ``__global__``
signature of the sources with :func:`parse_kernels` and checks that it matches its description here
exactly, so a kernel changed in one place and not the other fails the tests.

Examples
--------
>>> LN_FWD.name(T="float32", VW=4, N=2, TPR=128, RPB=1)
'ln_fwd<float, 4, 2, 128, 1>'
>>> [a.name for a in LN_COL_SUM.args]
['part', 'P', 'D', 'out']
>>> LN_COL_SUM.launch_args(part=0, P=3, D=8, out=None)
(np.uint64(0), np.int32(3), np.int32(8), np.uint64(0))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .limits import INT_MAX

__all__ = ["CTYPE", "Param", "Arg", "Family", "Instance", "parse_kernels", "parse_params", "parse_args", "mismatches",
           "parse_name", "FAMILIES",
           "LN_FWD", "LN_FWD_CLUSTER", "LN_BWD", "LN_BWD_CLUSTER", "LN_FWD_LOOPED", "LN_BWD_LOOPED",
           "LN_COL_SUM", "LN_BWD_PARAMS_LOOPED", "V0_MEAN", "V0_RSTD", "V0_NORMALIZE", "V1_FORWARD", "V2_FORWARD",
           "V3_FORWARD", "V4_FORWARD", "B0_ROWSUMS", "B0_DX", "B1_BACKWARD", "B1_SUM_PARTIALS"]

#: the template argument ``T`` for each storage dtype (the 16-bit types are raw bit patterns in the source)
CTYPE = {"float32": "float", "float16": "half_t", "bfloat16": "bf16_t"}

_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Param:
    """One template parameter: ``typename T``, ``int N`` or ``bool BROKEN``, with its default if the
    source gives one (``int BUFS = 1``)."""

    name: str
    type: str  # 'typename', 'int' or 'bool'
    default: int | bool | None = None

    def spell(self, value) -> str:
        """``value`` as written in a name expression (a storage dtype name becomes its C type)."""
        if self.type == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"template argument {self.name} must be a bool, got {value!r}")
            return "true" if value else "false"
        if self.type == "int":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"template argument {self.name} must be an int, got {value!r}")
            return str(int(value))
        value = CTYPE.get(value, value)
        if not isinstance(value, str) or not _IDENT.fullmatch(value):
            raise TypeError(f"template argument {self.name} must be a dtype name or a C type, got {value!r}")
        return value


@dataclass(frozen=True)
class Arg:
    """One kernel argument: its C type as written (white space normalised) and its name."""

    type: str
    name: str

    @property
    def pointer(self) -> bool:
        return "*" in self.type

    def convert(self, value):
        """``value`` as CuPy must pass it: a pointer as a device array or a ``numpy.uint64`` address
        (``None``: a null pointer), an ``int`` as ``numpy.int32``, a ``float`` as ``numpy.float32``.
        A Python int passed for an ``int`` would go as a 64-bit value and shift every later argument."""
        if self.pointer:
            if value is None:
                return np.uint64(0)
            return np.uint64(value) if isinstance(value, (int, np.integer)) else value
        if self.type == "int":
            if not -INT_MAX - 1 <= int(value) <= INT_MAX:
                raise ValueError(f"argument {self.name} = {value} does not fit the kernel's 32-bit int")
            return np.int32(value)
        if self.type == "float":
            return np.float32(value)
        raise TypeError(f"argument {self.name} has a C type this module does not convert: {self.type}")


@dataclass(frozen=True)
class Family:
    """One ``__global__`` function template: the source that holds it, its template parameters and
    its arguments, in the order the source declares them.

    Attributes
    ----------
    kernel : str
        The function's name.
    source : str
        ``'layernorm'`` or ``'versions'`` (files of :mod:`lnlib.cuda`), or the path of another
        ``.cu`` file (the experiments in ``benchmarks/experiments/``).
    params : tuple of Param
    args : tuple of Arg
    """

    kernel: str
    source: str
    params: tuple[Param, ...]
    args: tuple[Arg, ...]

    def name(self, **values) -> str:
        """The name expression of one instance, from its template arguments by parameter name.

        A parameter with a default may be left out; trailing arguments equal to their defaults are
        not written (the compiler fills them in, so the name is the shortest that means the same).

        Raises
        ------
        ValueError
            If an argument is missing or the family has no parameter of that name.
        TypeError
            If an argument is not of its parameter's kind.
        """
        known = [p.name for p in self.params]
        extra = set(values) - set(known)
        if extra:
            raise ValueError(f"{self.kernel} has no template parameter {sorted(extra)}; it has {known}")
        missing = [p.name for p in self.params if p.name not in values and p.default is None]
        if missing:
            raise ValueError(f"{self.kernel} needs template arguments {missing}")
        spelled = [p.spell(values.get(p.name, p.default)) for p in self.params]
        while spelled and self.params[len(spelled) - 1].default is not None and \
                spelled[-1] == self.params[len(spelled) - 1].spell(self.params[len(spelled) - 1].default):
            spelled.pop()
        return f"{self.kernel}<{', '.join(spelled)}>" if self.params else self.kernel

    @classmethod
    def describe(cls, kernel: str, source: str, params: str, args: str) -> "Family":
        """A family from the C++ text of its template parameters and arguments, as the source writes
        them: ``Family.describe("k", "layernorm", "typename T, int N = 2", "const T* x, int D")``."""
        return cls(kernel, source, parse_params(params), parse_args(args))

    def instance(self, **values) -> "Instance":
        """:meth:`name` with the family it belongs to."""
        return Instance(self, self.name(**values))

    def launch_args(self, *positional, **named) -> tuple:
        """The kernel's arguments in its order, each converted to its C type (:meth:`Arg.convert`).

        Given by name (or, in the kernel's order, by position); every argument must be given once.
        """
        names = [a.name for a in self.args]
        if len(positional) > len(names):
            raise TypeError(f"{self.kernel} takes {len(names)} arguments, got {len(positional)}")
        values = dict(zip(names, positional))
        twice = set(values) & set(named)
        extra = set(named) - set(names)
        if twice or extra:
            raise TypeError(f"{self.kernel}: arguments {sorted(twice)} given twice, {sorted(extra)} unknown; "
                            f"it takes {names}")
        values.update(named)
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{self.kernel} needs the arguments {missing}")
        return tuple(a.convert(values[a.name]) for a in self.args)


@dataclass(frozen=True)
class Instance:
    """One template instance: its family (for the source and the argument order) and its name."""

    family: Family
    name: str


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_params(text: str) -> tuple[Param, ...]:
    """Template parameters from their C++ text, ``"typename T, int N, bool B = false"``."""
    out = []
    for p in _split(text):
        decl, _, default = (s.strip() for s in p.partition("="))
        kind, name = decl.split()
        kind = "typename" if kind == "class" else kind
        if not default:
            value = None
        elif kind == "bool":
            value = {"true": True, "false": False}[default]
        else:
            value = int(default)
        out.append(Param(name, kind, value))
    return tuple(out)


def parse_args(text: str) -> tuple[Arg, ...]:
    """Kernel arguments from their C++ text, ``"const float* x, int D"``."""
    out = []
    for a in _split(text):
        a = re.sub(r"\s*\*\s*", "* ", re.sub(r"\s+", " ", a)).strip()
        m = re.fullmatch(r"(.*\S)\s+(\w+)", a)
        out.append(Arg(m.group(1), m.group(2)))
    return tuple(out)


def parse_kernels(text: str) -> dict[str, tuple[tuple[Param, ...], tuple[Arg, ...]]]:
    """Every ``__global__`` function of a CUDA source: ``{name: (template parameters, arguments)}``.

    Comments are removed first; attributes between ``__global__`` and the name
    (``__launch_bounds__(...)``, a macro such as ``LN_CLUSTER(C)``) are skipped.

    Examples
    --------
    >>> src = "template <typename T, int N = 2>\\n__global__ void __launch_bounds__(256)\\nk(const T* x, int D) {}"
    >>> params, args = parse_kernels(src)["k"]
    >>> [(p.name, p.type, p.default) for p in params], [(a.type, a.name) for a in args]
    ([('T', 'typename', None), ('N', 'int', 2)], [('const T*', 'x'), ('int', 'D')])
    """
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for m in re.finditer(r"(?:template\s*<(?P<t>[^<>]*)>\s*)?__global__\b(?P<head>[^{;]*)\{", text):
        head = re.search(r"(\w+)\s*\(([^()]*)\)\s*$", m.group("head"))
        if head.group(1) in out:
            raise ValueError(f"kernel {head.group(1)} is defined twice")
        out[head.group(1)] = (parse_params(m.group("t") or ""), parse_args(head.group(2)))
    return out


# ---- layernorm.cu: the kernels lnlib.cuda runs ------------------------------------------------------
_FWD_ARGS = "const T* x, const T* gamma, const T* beta, T* y, float* mean_shift, float* rstd, int M, int D, float eps"
_BWD_ARGS = ("const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx, "
             "float* part_dgamma, float* part_dbeta, int M, int D")
#: the row held in registers: RPB rows of TPR threads a block, N vectors of VW elements a thread
LN_FWD = Family.describe("ln_fwd", "layernorm", "typename T, int VW, int N, int TPR, int RPB", _FWD_ARGS)
LN_BWD = Family.describe("ln_bwd", "layernorm", "typename T, int VW, int N, int TPR, int RPB", _BWD_ARGS)
#: a row split over the C blocks of a thread-block cluster (sm_90)
LN_FWD_CLUSTER = Family.describe(
    "ln_fwd_cluster", "layernorm", "typename T, int VW, int N, int TPR, int C", _FWD_ARGS)
LN_BWD_CLUSTER = Family.describe(
    "ln_bwd_cluster", "layernorm", "typename T, int VW, int N, int TPR, int C", _BWD_ARGS)
#: one block of NT threads per row, the row read from memory on every pass: any D
LN_FWD_LOOPED = Family.describe("ln_fwd_looped", "layernorm", "typename T, int NT", _FWD_ARGS)
LN_BWD_LOOPED = Family.describe(
    "ln_bwd_looped", "layernorm", "typename T, int NT",
    "const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx, int M, int D")
#: the backward's second stage: the partial rows of dgamma (or dbeta) added in a fixed order
LN_COL_SUM = Family.describe(
    "ln_col_sum", "layernorm", "typename T", "const float* __restrict__ part, int P, int D, T* __restrict__ out")
#: the looped backward's dgamma and dbeta partial rows
LN_BWD_PARAMS_LOOPED = Family.describe(
    "ln_bwd_params_looped", "layernorm", "typename T",
    "const T* x, const T* dy, const float* mean_shift, const float* rstd, float* part_dgamma, float* part_dbeta, "
    "int M, int D")

# ---- versions.cu: chapter 10's kernels, one idea at a time (float32) --------------------------------
_V_FWD_ARGS = ("const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd, int D, "
               "float eps")
V0_MEAN = Family.describe("v0_mean", "versions", "bool BROKEN", "const float* x, float* mean, int M, int D")
V0_RSTD = Family.describe(
    "v0_rstd", "versions", "bool BROKEN", "const float* x, const float* mean, float* rstd, int M, int D, float eps")
V0_NORMALIZE = Family.describe(
    "v0_normalize", "versions", "",
    "const float* x, const float* gamma, const float* beta, const float* mean, const float* rstd, float* y, "
    "int M, int D")
V1_FORWARD = Family.describe("v1_forward", "versions", "", _V_FWD_ARGS)
V2_FORWARD = Family.describe("v2_forward", "versions", "int N", _V_FWD_ARGS)
V3_FORWARD = Family.describe("v3_forward", "versions", "int N", _V_FWD_ARGS)
V4_FORWARD = Family.describe(  # saves mean(x - x[0]), as lnlib.cuda does
    "v4_forward", "versions", "int N", _V_FWD_ARGS.replace("float* mean,", "float* mean_shift,"))
B0_ROWSUMS = Family.describe(
    "b0_rowsums", "versions", "",
    "const float* x, const float* dy, const float* gamma, const float* mean, const float* rstd, float* a, "
    "float* b, int M, int D")
B0_DX = Family.describe(
    "b0_dx", "versions", "",
    "const float* x, const float* dy, const float* gamma, const float* mean, const float* rstd, const float* a, "
    "const float* b, float* dx, float* dgamma, float* dbeta, int M, int D")
B1_BACKWARD = Family.describe(
    "b1_backward", "versions", "int N",
    "const float* x, const float* dy, const float* gamma, const float* mean_shift, const float* rstd, float* dx, "
    "float* part_dgamma, float* part_dbeta, int M, int D")
B1_SUM_PARTIALS = Family.describe("b1_sum_partials", "versions", "", "const float* part, int P, int D, float* out")

#: every family of the package's sources, by kernel name
FAMILIES = {f.kernel: f for f in (
    LN_FWD, LN_FWD_CLUSTER, LN_BWD, LN_BWD_CLUSTER, LN_FWD_LOOPED, LN_BWD_LOOPED, LN_COL_SUM, LN_BWD_PARAMS_LOOPED,
    V0_MEAN, V0_RSTD, V0_NORMALIZE, V1_FORWARD, V2_FORWARD, V3_FORWARD, V4_FORWARD, B0_ROWSUMS, B0_DX, B1_BACKWARD,
    B1_SUM_PARTIALS)}


def mismatches(text: str, families) -> list[str]:
    """Where the ``__global__`` functions of a source and their descriptions disagree: a kernel in
    one and not the other, or other template parameters (names, kinds, defaults, order) or other
    arguments (C types, names, order). Empty when they match exactly.

    Examples
    --------
    >>> src = "template <typename T, int NT> __global__ void ln_fwd_looped(const T* x) {}"
    >>> mismatches(src, [LN_FWD_LOOPED])
    ['ln_fwd_looped: arguments (const T* x) in the source, (const T* x, const T* gamma, const T* beta, \
T* y, float* mean_shift, float* rstd, int M, int D, float eps) described']
    """
    found = parse_kernels(text)
    described = {f.kernel: f for f in families}
    out = [f"{k}: in the source, not described" for k in sorted(set(found) - set(described))]
    out += [f"{k}: described, not in the source" for k in sorted(set(described) - set(found))]

    def show(items):  # as C++ writes them
        return ", ".join(f"{a.type} {a.name}" + ("" if getattr(a, "default", None) is None else
                                                 f" = {str(a.default).lower()}") for a in items)

    for k in sorted(set(found) & set(described)):
        params, args = found[k]
        f = described[k]
        if params != f.params:
            out.append(f"{k}: template <{show(params)}> in the source, <{show(f.params)}> described")
        if args != f.args:
            out.append(f"{k}: arguments ({show(args)}) in the source, ({show(f.args)}) described")
    return out


def parse_name(expression: str, families=None) -> tuple[Family, dict]:
    """The family of a name expression and its template arguments by parameter name (the inverse of
    :meth:`Family.name`; storage types stay C types, defaults left out are filled in).

    Examples
    --------
    >>> family, values = parse_name("v2_forward<8>")
    >>> family is V2_FORWARD, values
    (True, {'N': 8})
    """
    kernel, _, rest = expression.partition("<")
    family = (families or FAMILIES).get(kernel.strip())
    if family is None:
        raise ValueError(f"no kernel family {kernel.strip()!r} in the registry")
    spelled = _split(rest.rstrip().removesuffix(">")) if rest else []
    if len(spelled) > len(family.params):
        raise ValueError(f"{expression}: {family.kernel} has {len(family.params)} template parameters")
    values = {}
    for p, s in zip(family.params, spelled):
        values[p.name] = {"true": True, "false": False}[s] if p.type == "bool" else int(s) if p.type == "int" else s
    for p in family.params[len(spelled):]:
        if p.default is None:
            raise ValueError(f"{expression}: template argument {p.name} is missing")
        values[p.name] = p.default
    return family, values
