"""Try several launch layouts per shape and print GB/s: the data behind lnlib.cuda.kernels.choose.

    python benchmarks/tune.py [--dtypes float32,bfloat16] [--D 256,4096]

The layouts run lnlib.cuda's own kernels; the backward's running sums in registers (acc_regs) are an
experiment (benchmarks/experiments/), launched through the same launcher.
"""

import argparse
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from benchmarks.experiments import variants as X  # noqa: E402
from benchmarks.gpu import copy_gbps, make_inputs, min_bytes, time_ms  # noqa: E402
from lnlib import cuda as lncuda  # noqa: E402
from lnlib.cuda import kernels as K  # noqa: E402
from lnlib.cuda.limits import ITEMSIZE, MAX_BYTES_PER_THREAD, MAX_THREADS, SMEM_ACC_LIMIT  # noqa: E402


def candidates(D, dtype, backward):
    """The chosen layout first, then other threads per row and rows per block around it, as
    :class:`benchmarks.experiments.variants.Variant` (the backward's with one vector a thread, and
    the chosen one, also with the running sums in registers)."""
    base = K.choose(D, dtype, backward)
    out = [X.Variant(base)]
    if base.kind == "looped":
        return out
    cap = MAX_BYTES_PER_THREAD // ITEMSIZE[dtype]
    V = D // base.VW
    for TPR in (base.TPR // 4, base.TPR // 2, base.TPR * 2):
        if not 1 <= TPR <= MAX_THREADS // max(1, base.RPB if base.C == 1 else 1):
            continue
        N = math.ceil(V / base.C / TPR)
        if N * base.VW > cap:
            continue
        for RPB in sorted({max(1, min(32, 256 // TPR)), max(1, min(32, 512 // TPR)), max(1, min(32, 128 // TPR))}):
            if base.C > 1:
                RPB = 1
            if TPR * RPB > MAX_THREADS:
                continue
            cfg = dataclasses.replace(base, TPR=TPR, N=N, RPB=RPB)
            if backward and K.acc_smem_bytes(cfg, D) > SMEM_ACC_LIMIT:
                continue
            out.append(X.Variant(cfg, acc_regs=backward and N == 1))
    if backward:
        out.append(X.Variant(base, acc_regs=True))
    return list(dict.fromkeys(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--D", default=",".join(map(str, K.BENCH_D)))
    args = ap.parse_args()
    copy = copy_gbps()
    print(f"copy {copy:.0f} GB/s")
    for dtype in args.dtypes.split(","):
        s = ITEMSIZE[dtype]
        for D in map(int, args.D.split(",")):
            M, x, g, b, dy = make_inputs(dtype, D)
            _, cache = lncuda.layer_norm_forward(x, g, b)
            for backward in (False, True):
                nbytes = min_bytes(M, D, s, backward)
                for v in candidates(D, dtype, backward):
                    try:
                        if backward:
                            fn = lambda: X.backward(dy, cache, v)  # noqa: E731
                        else:
                            fn = lambda: X.forward(x, g, b, 1e-5, v)  # noqa: E731
                        inst = X.runs(dtype, v, backward)
                        name = inst.name
                        ms = time_ms(fn, warmup=3, reps=5)
                        kern = K.kernel_of(inst)
                        print(f"{dtype:8s} D={D:6d} {'bwd' if backward else 'fwd'} {100 * nbytes / (ms * 1e-3) / 1e9 / copy:5.1f}%"
                              f"  regs {kern.num_regs:3d} spill {kern.local_size_bytes:3d}  {name}", flush=True)
                    except Exception as exc:  # a layout that does not launch is just not a candidate
                        print(f"{dtype} D={D} {v.label()}: {type(exc).__name__}: {str(exc)[:120]}")
            del x, dy, g, b, cache
            cp.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
