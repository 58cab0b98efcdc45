"""The experiments' registry: variant layouts, the kernels that run them, their names and launches.

``layernorm_variants.cu`` beside this file holds variants of lnlib.cuda's row and cluster kernels
(README.md says what each is and what was measured). This module describes its kernels as
:class:`lnlib.cuda.families.Family` objects (checked against the source by
``tests/test_experiments.py``), lists the variants measured at the benchmark's row lengths
(:func:`variants`), names them (:func:`instance`), and launches them through lnlib.cuda's own
launcher (:func:`forward`, :func:`backward`), which passes the production kernels' arguments: the
variant families take exactly those.

Needs neither CuPy nor a GPU to list, name and compile; :func:`forward` and :func:`backward` need both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lnlib.cuda import families as F
from lnlib.cuda import kernels as K
from lnlib.cuda import limits as L

#: the experiments' CUDA source (a path: lnlib.cuda.kernels compiles any .cu file by path)
SOURCE = str(Path(__file__).resolve().with_name("layernorm_variants.cu"))

# Each variant family is its production family (same template parameters first, same arguments)
# with the variant parameters after them, every one defaulting to what production does.
LN_FWD_VARIANT = F.Family("ln_fwd_variant", SOURCE, F.LN_FWD.params + F.parse_params(
    "bool ONEPASS = false, int BUFS = 1, bool KEEP = false"), F.LN_FWD.args)
LN_FWD_CLUSTER_VARIANT = F.Family("ln_fwd_cluster_variant", SOURCE, F.LN_FWD_CLUSTER.params + F.parse_params(
    "int BUFS = 1, bool MERGE = false, bool KEEP = false"), F.LN_FWD_CLUSTER.args)
LN_BWD_VARIANT = F.Family("ln_bwd_variant", SOURCE, F.LN_BWD.params + F.parse_params(
    "bool ACC_REGS = false, int BUFS = 1, bool KEEP = false"), F.LN_BWD.args)
LN_BWD_CLUSTER_VARIANT = F.Family("ln_bwd_cluster_variant", SOURCE, F.LN_BWD_CLUSTER.params + F.parse_params(
    "bool ACC_REGS = false, int BUFS = 1, bool KEEP = false"), F.LN_BWD_CLUSTER.args)
#: every family of layernorm_variants.cu, by kernel name
FAMILIES = {f.kernel: f for f in (LN_FWD_VARIANT, LN_FWD_CLUSTER_VARIANT, LN_BWD_VARIANT, LN_BWD_CLUSTER_VARIANT)}
#: the production family each variant family extends
PRODUCTION = {LN_FWD_VARIANT: F.LN_FWD, LN_FWD_CLUSTER_VARIANT: F.LN_FWD_CLUSTER, LN_BWD_VARIANT: F.LN_BWD,
              LN_BWD_CLUSTER_VARIANT: F.LN_BWD_CLUSTER}
_FAMILY = {(False, "rows"): LN_FWD_VARIANT, (False, "cluster"): LN_FWD_CLUSTER_VARIANT,
           (True, "rows"): LN_BWD_VARIANT, (True, "cluster"): LN_BWD_CLUSTER_VARIANT}
#: the Variant field behind each variant template parameter
FIELD = {"ONEPASS": "onepass", "BUFS": "bufs", "MERGE": "merge", "KEEP": "keep", "ACC_REGS": "acc_regs"}


@dataclass(frozen=True)
class Variant:
    """A production layout with variant choices. Every default is what lnlib.cuda does.

    Attributes
    ----------
    layout : lnlib.cuda.kernels.RowConfig
        Threads, rows and vectors, as the chooser gives them ('rows' or 'cluster').
    bufs : int
        Reduction slots: 2 alternates two, one barrier per reduction instead of two.
    merge : bool
        Cluster forward: merge the blocks' (mean, sum of squares) once per row.
    keep : bool
        gamma (and beta) loaded once per block and kept in registers.
    acc_regs : bool
        Backward: the running dgamma/dbeta sums in registers instead of shared memory.
    onepass : bool
        Forward ('rows'): the one-pass statistics E[x^2] - E[x]^2, without the shift.
    blocks_per_sm : int
        Forward grid: 0 one block (or cluster) per row group, as production; n > 0 a persistent grid
        of n blocks per SM; -1 as many blocks as the SMs hold at once.
    """

    layout: K.RowConfig
    bufs: int = 1
    merge: bool = False
    keep: bool = False
    acc_regs: bool = False
    onepass: bool = False
    blocks_per_sm: int = 0

    @property
    def production(self) -> bool:
        """True when every choice is the default: lnlib.cuda's own kernel and grid run it."""
        return all(getattr(self, f.name) == f.default for f in fields(self) if f.name != "layout")

    def label(self) -> str:
        """A short description for the measurements' output."""
        c = self.layout
        extra = [f"bufs={self.bufs}"] + ["merge"] * self.merge + ["keep"] * self.keep + \
            ["acc_regs"] * self.acc_regs + ["onepass"] * self.onepass + (
            [f"blocks/SM={self.blocks_per_sm if self.blocks_per_sm > 0 else 'resident'}"] if self.blocks_per_sm else [])
        return f"{c.kind} C={c.C} TPR={c.TPR} RPB={c.RPB} N={c.N} " + " ".join(extra)


def instance(dtype: str, v: Variant, backward: bool) -> F.Instance:
    """The kernel of layernorm_variants.cu that runs ``v`` for storage ``dtype``: the layout's
    template arguments as production has them, then the variant's.

    Raises
    ------
    ValueError
        If the layout is looped (no variants), or a choice is not a parameter of that kernel
        (merge outside the cluster forward, onepass outside the row forward, acc_regs in a forward).
    """
    if v.layout.kind == "looped":
        raise ValueError("the looped kernels have no variants")
    family = _FAMILY[backward, v.layout.kind]
    names = {p.name for p in family.params}
    unused = [p for p, f in FIELD.items() if p not in names and getattr(v, f) != getattr(Variant, f)]
    if unused:
        raise ValueError(f"{family.kernel} has no parameter {unused} ({v.label()})")
    values = K.layout_values(PRODUCTION[family], dtype, v.layout)
    return family.instance(**values, **{p: getattr(v, FIELD[p]) for p in names & set(FIELD)})


def runs(dtype: str, v: Variant, backward: bool) -> F.Instance:
    """The kernel that :func:`forward` or :func:`backward` launches for ``v``: lnlib.cuda's own for a
    production variant (all defaults, any layout), else :func:`instance`."""
    if v.production:
        return (K.backward_instance if backward else K.forward_instance)(dtype, v.layout)
    return instance(dtype, v, backward)


def variants(D: int, dtype: str, backward: bool, cc: int = 90) -> list[Variant]:
    """The chooser's layout for D (first, all defaults) and the variants of it that
    ``tune_variants.py`` measures against it."""
    base = Variant(K.choose(D, dtype, backward, cc))
    c = base.layout
    if c.kind == "looped":
        return [base]
    out = [base, replace(base, bufs=2)]
    # keep: gamma/beta in registers (the compiler also hoists their conversion out of the row loop),
    # not with 1024-thread blocks, whose 64-register cap would spill
    keep = c.threads <= 512
    if backward:  # the backward's grid is persistent already
        out += [replace(base, bufs=2, keep=True)] if keep else []
    elif c.kind == "rows":
        # keep without a persistent grid: gamma and beta are loaded with x, not after the reductions
        # (the SASS of the default kernel shows them loaded, and waited for, just before y is stored)
        out += [replace(base, bufs=2, keep=True)] if keep else []
        out.append(replace(base, bufs=2, keep=keep, blocks_per_sm=-1))
    else:
        out += [replace(base, merge=True), replace(base, bufs=2, merge=True),
                replace(base, bufs=2, merge=True, blocks_per_sm=2), replace(base, bufs=2, merge=True, blocks_per_sm=4),
                replace(base, bufs=2, merge=True, blocks_per_sm=2, keep=True)]
    if cc >= 90 and c.TPR >= 512 and c.C < 8 and c.VW > 1 and D % (2 * c.C * c.VW) == 0:
        # the row over twice the blocks of 512 threads: fewer registers and (backward) half the
        # shared-memory accumulators per block, so more blocks resident per SM and more loads in flight
        C = 2 * c.C
        split = Variant(replace(c, kind="cluster", C=C, TPR=512, RPB=1, N=math.ceil(D // c.VW / C / 512)), bufs=2)
        out += [split] if backward else [split, replace(split, merge=True)]
    return out


def onepass(D: int, dtype: str, cc: int = 90) -> Variant | None:
    """The one-pass statistics on the chooser's forward layout for D (None where that layout is not
    'rows'): the recorded run's "template: one-pass" row of chapter 10 was this kernel."""
    base = K.choose(D, dtype, False, cc)
    return Variant(base, onepass=True) if base.kind == "rows" else None


def instances(cc: int = 90) -> list[str]:
    """Every kernel of layernorm_variants.cu that :func:`variants` and :func:`onepass` name at the
    benchmark's row lengths (:data:`lnlib.cuda.kernels.BENCH_D`), for the supported dtypes."""
    names = set()
    for dtype in F.CTYPE:
        for D in K.BENCH_D:
            for backward in (False, True):
                names.update(instance(dtype, v, backward).name for v in variants(D, dtype, backward, cc)
                             if v.layout.kind != "looped")
            one = onepass(D, dtype, cc)
            if one is not None:
                names.add(instance(dtype, one, False).name)
    return sorted(names)


def forward(x, gamma, beta, eps: float, v: Variant):
    """``lnlib.cuda.layer_norm_forward`` with ``v``'s kernel and grid (the production ones when
    ``v.production``): ``(y, cache)``."""
    from lnlib.cuda import api

    if v.production:
        return api.layer_norm_forward(x, gamma, beta, eps, _config=v.layout)
    inst = runs(_dtype(x), v, False)
    grid = None
    if v.blocks_per_sm:
        M = math.prod(x.shape[:-1])
        device = _device(x)
        C = v.layout.C
        groups = min(K.forward_groups(M, v.layout.RPB), L.INT_MAX // C) * C
        if v.blocks_per_sm > 0:  # n blocks per SM, rows visited with a stride
            per = K.device_limits(device).sm_count * v.blocks_per_sm
        else:  # as many as the SMs hold at once
            per = api.persistent_grid(inst, v.layout.threads, 0, device)
        grid = min(groups, max(1, per // C) * C)
    return api.layer_norm_forward(x, gamma, beta, eps, _config=v.layout, _kernel=inst, _grid=grid)


def backward(dy, cache, v: Variant):
    """``lnlib.cuda.layer_norm_backward`` with ``v``'s kernel: ``(dx, dgamma, dbeta)``."""
    from lnlib.cuda import api

    if v.production:
        return api.layer_norm_backward(dy, cache, _config=v.layout)
    if v.blocks_per_sm:
        raise ValueError("the backward's grid is persistent already: blocks_per_sm is a forward variant")
    return api.layer_norm_backward(dy, cache, _config=v.layout, _kernel=runs(_dtype(dy), v, True))


def _dtype(a) -> str:
    name = str(a.dtype)
    return name.removeprefix("torch.")


def _device(a) -> int:
    dev = a.device
    return dev.id if hasattr(dev, "id") else dev.index
