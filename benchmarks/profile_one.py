"""One forward and one backward call at a benchmark shape, for ncu (Nsight Compute) to profile.

    ncu --section SpeedOfLight --section WarpStateStats python benchmarks/profile_one.py 65536 1024
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from lnlib import cuda  # noqa: E402

M, D = int(sys.argv[1]), int(sys.argv[2])
x = cp.random.standard_normal((M, D), dtype=cp.float32)
g = cp.random.standard_normal(D, dtype=cp.float32)
dy = cp.random.standard_normal((M, D), dtype=cp.float32)
for _ in range(2):
    y, cache = cuda.layer_norm_forward(x, g, g)
    cuda.layer_norm_backward(dy, cache)
cp.cuda.Device().synchronize()
