"""Layouts for long rows (D >= 16384): cluster size, threads per block and elements per thread.

    python benchmarks/tune_long.py
"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from benchmarks.gpu import copy_gbps, make_inputs, min_bytes, time_ms  # noqa: E402
from lnlib import cuda as lncuda  # noqa: E402
from lnlib.cuda import kernels as K  # noqa: E402
from lnlib.cuda.limits import ITEMSIZE, MAX_BYTES_PER_THREAD, SMEM_ACC_LIMIT, VECTOR_BYTES  # noqa: E402


def main():
    copy = copy_gbps()
    print(f"copy {copy:.0f} GB/s")
    for dtype, D in [("float32", 16384), ("float32", 65536), ("bfloat16", 16384), ("bfloat16", 65536)]:
        s = ITEMSIZE[dtype]
        M, x, g, b, dy = make_inputs(dtype, D)
        _, cache = lncuda.layer_norm_forward(x, g, b)
        VW = VECTOR_BYTES // s
        for backward in (False, True):
            nbytes = min_bytes(M, D, s, backward)
            for C in (1, 2, 4, 8):
                for TPR in (256, 512, 1024):
                    N = math.ceil(D // VW / C / TPR)
                    cfg = K.RowConfig("cluster" if C > 1 else "rows", VW, N, TPR, 1, C)
                    if N * VW * s > MAX_BYTES_PER_THREAD or (backward and K.acc_smem_bytes(cfg, D) > SMEM_ACC_LIMIT):
                        continue
                    name = K.kernel_name(dtype, cfg, backward)
                    try:
                        if backward:
                            fn = lambda: lncuda.layer_norm_backward(dy, cache, _config=cfg)  # noqa: E731
                        else:
                            fn = lambda: lncuda.layer_norm_forward(x, g, b, _config=cfg)  # noqa: E731
                        ms = time_ms(fn, warmup=2, reps=5)
                        kern = K.get_kernel(name)
                        print(f"{dtype:8s} D={D:6d} {'bwd' if backward else 'fwd'} {100 * nbytes / (ms * 1e-3) / 1e9 / copy:5.1f}%"
                              f"  regs {kern.num_regs:3d} spill {kern.local_size_bytes:3d}  {name}", flush=True)
                    except Exception as exc:
                        print(f"{name}: {type(exc).__name__}: {str(exc)[:100]}", flush=True)
        del x, dy, g, b, cache
        cp.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
