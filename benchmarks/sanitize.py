"""A small run of lnlib.cuda's main kernels, for compute-sanitizer (memcheck, racecheck).

    compute-sanitizer --tool memcheck python benchmarks/sanitize.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from lnlib import cuda  # noqa: E402

rng = cp.random.default_rng(0)
for M, D in [(37, 1), (33, 7), (64, 256), (9, 1000), (16, 1024), (4, 4096), (3, 16384), (2, 65536), (1, 100003)]:
    for dtype in (cp.float32, cp.float16):
        x = rng.standard_normal((M, D), dtype=cp.float32).astype(dtype)
        g = rng.standard_normal(D, dtype=cp.float32).astype(dtype)
        b = rng.standard_normal(D, dtype=cp.float32).astype(dtype)
        dy = rng.standard_normal((M, D), dtype=cp.float32).astype(dtype)
        y, cache = cuda.layer_norm_forward(x, g, b)
        dx, dg, db = cuda.layer_norm_backward(dy, cache)
        cp.cuda.Device().synchronize()
print("sanitize run done")
