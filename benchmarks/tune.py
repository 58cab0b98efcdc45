"""Try several launch layouts per shape and print GB/s: the data behind lnlib.cuda.kernels.choose.

    python benchmarks/tune.py [--dtypes float32,bfloat16] [--D 256,4096]
"""

import argparse
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from benchmarks.gpu import copy_gbps, make_inputs, min_bytes, time_ms  # noqa: E402
from lnlib import cuda as lncuda  # noqa: E402
from lnlib.cuda import kernels as K  # noqa: E402


def candidates(D, dtype, backward):
    base = K.choose(D, dtype, backward)
    out = [base]
    if base.kind == "looped":
        return out
    cap = K.MAX_BYTES_PER_THREAD // K.ITEMSIZE[dtype]
    V = D // base.VW
    for TPR in (base.TPR // 4, base.TPR // 2, base.TPR * 2):
        if not 1 <= TPR <= 1024 // max(1, base.RPB if base.C == 1 else 1):
            continue
        N = math.ceil(V / base.C / TPR)
        if N * base.VW > cap:
            continue
        for RPB in sorted({max(1, min(32, 256 // TPR)), max(1, min(32, 512 // TPR)), max(1, min(32, 128 // TPR))}):
            if base.C > 1:
                RPB = 1
            if TPR * RPB > 1024:
                continue
            cfg = dataclasses.replace(base, TPR=TPR, N=N, RPB=RPB, acc_regs=N == 1)
            if backward and not cfg.acc_regs and RPB * 2 * (D // cfg.C) * 4 > K.SMEM_ACC_LIMIT:
                continue
            out.append(cfg)
    if backward:
        out.append(dataclasses.replace(base, acc_regs=not base.acc_regs))
    return list(dict.fromkeys(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--D", default="256,1024,4096,8192,16384,65536")
    args = ap.parse_args()
    copy = copy_gbps()
    print(f"copy {copy:.0f} GB/s")
    for dtype in args.dtypes.split(","):
        s = 4 if dtype == "float32" else 2
        for D in map(int, args.D.split(",")):
            M, x, g, b, dy = make_inputs(dtype, D)
            _, cache = lncuda.layer_norm_forward(x, g, b)
            for backward in (False, True):
                nbytes = min_bytes(M, D, s, backward)
                for cfg in candidates(D, dtype, backward):
                    try:
                        if backward:
                            fn = lambda: lncuda.layer_norm_backward(dy, cache, _config=cfg)  # noqa: E731
                        else:
                            fn = lambda: lncuda.layer_norm_forward(x, g, b, _config=cfg)  # noqa: E731
                        name = K.kernel_name(dtype, cfg, backward)
                        ms = time_ms(fn, warmup=3, reps=5)
                        kern = K.get_kernel(name)
                        print(f"{dtype:8s} D={D:6d} {'bwd' if backward else 'fwd'} {100 * nbytes / (ms * 1e-3) / 1e9 / copy:5.1f}%"
                              f"  regs {kern.num_regs:3d} spill {kern.local_size_bytes:3d}  {name}", flush=True)
                    except Exception as exc:  # a layout that does not launch is just not a candidate
                        print(f"{dtype} D={D} {cfg}: {type(exc).__name__}: {str(exc)[:120]}")
            del x, dy, g, b, cache
            cp.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
