"""Accuracy of float32 LayerNorm at growing row offsets: lnlib, the plain step-by-step version, PyTorch CPU.

Max abs error over max abs value against the long-double oracle on the same float32 inputs,
256 rows x 4096, unit-variance rows shifted by `offset` (condition number about |offset|), a random dy.

    .venv/bin/python benchmarks/accuracy_cpu.py
"""

import numpy as np

from lnlib import layer_norm_backward, layer_norm_forward, reference
from lnlib.oracle import layer_norm_longdouble, max_rel_error

try:
    import torch
except ImportError:  # the table is still useful without it
    torch = None

OFFSETS = [0.0, 1e2, 1e3, 1e4, 1e5, 1e6]


def measure(offset, rows=256, D=4096, seed=0):
    rng = np.random.default_rng(seed)
    x = (offset + rng.standard_normal((rows, D))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ry, rdx, _, _ = layer_norm_longdouble(x, None, None, 1e-5, dy)
    out = {}
    y, cache = layer_norm_forward(x)
    out["lnlib"] = (max_rel_error(y, ry), max_rel_error(layer_norm_backward(dy, cache)[0], rdx))
    y, c = reference.forward(x)
    out["plain float32"] = (max_rel_error(y, ry), max_rel_error(reference.backward(dy, c)[0], rdx))
    if torch is not None:
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.layer_norm(xt, (D,))
        yt.backward(torch.tensor(dy))
        out[f"torch {torch.__version__} CPU"] = (max_rel_error(yt.detach().numpy(), ry), max_rel_error(xt.grad.numpy(), rdx))
    return out


def main():
    results = {off: measure(off) for off in OFFSETS}
    impls = list(results[OFFSETS[0]])
    print("| offset | " + " | ".join(f"{i} y | {i} dx" for i in impls) + " |")
    print("|---" * (1 + 2 * len(impls)) + "|")
    for off, r in results.items():
        print(f"| {off:.0e} | " + " | ".join(f"{r[i][0]:.1e} | {r[i][1]:.1e}" for i in impls) + " |")


if __name__ == "__main__":
    main()
