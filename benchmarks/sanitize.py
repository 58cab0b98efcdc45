"""A small run of lnlib.cuda's main kernels and of the layout variants, for compute-sanitizer.

    compute-sanitizer --tool memcheck python benchmarks/sanitize.py
    compute-sanitizer --tool racecheck python benchmarks/sanitize.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from benchmarks.experiments import variants as X  # noqa: E402
from lnlib import cuda  # noqa: E402
from lnlib.cuda import api, kernels  # noqa: E402

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
# the experiments' variants (fewer barriers, merged cluster statistics, persistent grids, the one-pass
# statistics): few rows, but more than one pass of a persistent grid where there is one
cc = api._cc(cp.cuda.Device().id)
for D in kernels.BENCH_D:
    for dtype in (cp.float32, cp.float16):
        M = 40  # more row groups than a persistent cluster grid has (fp32, D = 65536: 33 clusters)
        x = rng.standard_normal((M, D), dtype=cp.float32).astype(dtype)
        g = rng.standard_normal(D, dtype=cp.float32).astype(dtype)
        dy = rng.standard_normal((M, D), dtype=cp.float32).astype(dtype)
        one = X.onepass(D, dtype.__name__, cc)
        for v in X.variants(D, dtype.__name__, False, cc) + ([one] if one else []):
            X.forward(x, g, g, 1e-5, v)
        _, cache = cuda.layer_norm_forward(x, g, g)
        for v in X.variants(D, dtype.__name__, True, cc):
            X.backward(dy, cache, v)
        cp.cuda.Device().synchronize()
print("sanitize run done")
