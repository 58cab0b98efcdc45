"""GPU benchmark: lnlib.cuda, chapter 10's kernels, PyTorch eager and torch.compile, against the copy line.

    python benchmarks/gpu.py --out DIR [--quick] [--no-compile]

Per shape (rows x D with x of 256 MiB, so every call moves at least 512 MiB), every implementation
is first checked against a float64 reference computed on the GPU from the same inputs, then timed
with CUDA events after warm-up (median of the timed calls). Bytes are the minimum each pass must
move (lnlib.cuda.timing.min_bytes): forward 2*M*D*s + 8*M + 2*D*s, backward 3*M*D*s + 8*M + 3*D*s.
The 100% line is a device-to-device cudaMemcpy measured (bytes read + written) at the start and at the end of the run.
Writes gpu-<device>-<date>.json with provenance; never edit it by hand.

With --versions it also measures the kernels of the book's chapter 10 (lnlib/cuda/versions.cu, float32),
as impl "lnlib.v0" ... "lnlib.v4" (forward) and "lnlib.b0", "lnlib.b1" (backward), each at the row
lengths it takes (lnlib.cuda.versions.launch_config); "lnlib" is the production kernel (layernorm.cu).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402

from lnlib import cuda as lncuda  # noqa: E402
from lnlib.cuda import kernels as K  # noqa: E402
from lnlib.cuda import versions  # noqa: E402
from lnlib.cuda.limits import ITEMSIZE  # noqa: E402
from lnlib.cuda.timing import (  # noqa: E402,F401 (also used by tune*.py)
    EPS, copy_gbps, min_bytes, random_inputs, reference64, rel_err, time_ms, warm_up)

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # lnlib alone can still be measured
    torch = None


def _configure_torch_compile():
    """Called by main() only, so that importing this module (tune*.py do) changes no torch setting:
    repeated backward calls on one compiled graph need its buffers kept (retain_graph=True)."""
    if torch is not None:
        import torch._functorch.config

        torch._functorch.config.donated_buffer = False

D_LIST = list(K.BENCH_D)
IMPL = {k: v.impl for k, v in versions.VERSIONS.items()}  # "lnlib.v0", ...: the versions' rows


def make_inputs(dtype: str, D: int):
    """(M, x, gamma, beta, dy) for a benchmark shape: x of 256 MiB, seeded by D; CuPy arrays for
    float32, torch tensors for bfloat16 (CuPy has no bfloat16)."""
    M = (256 << 20) // (D * ITEMSIZE[dtype])
    x, g, b, dy = random_inputs(M, D, seed=D)
    if dtype != "float32":
        x, g, b, dy = (torch.from_dlpack(a).to(getattr(torch, dtype)) for a in (x, g, b, dy))
    return M, x, g, b, dy


def as_cupy(t):
    if torch is not None and isinstance(t, torch.Tensor):
        if t.dtype == torch.bfloat16:
            t = t.float()
        return cp.from_dlpack(t.detach())
    return t


def measure_accuracy(M=256, D=4096, offsets=(0.0, 1e2, 1e3, 1e4, 1e5, 1e6)):
    """float32 y and dx errors (max abs error / max abs value) against float64 on rows N(offset, 1)."""
    out = []
    for off in offsets:
        rng = cp.random.default_rng(int(off) + 7)
        x = (off + rng.standard_normal((M, D), dtype=cp.float64)).astype(cp.float32)
        g = (1 + 0.5 * rng.standard_normal(D, dtype=cp.float32)).astype(cp.float32)
        b = rng.standard_normal(D, dtype=cp.float32)
        dy = rng.standard_normal((M, D), dtype=cp.float32)
        ref = reference64(x, g, b, dy)
        y, cache = lncuda.layer_norm_forward(x, g, b, EPS)
        dx = lncuda.layer_norm_backward(dy, cache)[0]
        out.append({"impl": "lnlib", "offset": off, "y": rel_err(y, ref[0]), "dx": rel_err(dx, ref[1])})
        # chapter 10's one-pass statistics (v3), and the shifted two-pass ones (v4, and b1 on them)
        yv = versions.forward("v3", x, g, b, EPS)[0]
        out.append({"impl": IMPL["v3"], "offset": off, "y": rel_err(yv, ref[0]), "dx": None})
        yv, mean, rstd = versions.forward("v4", x, g, b, EPS)
        dxv = versions.backward("b1", dy, x, g, mean, rstd)[0]
        out.append({"impl": IMPL["v4"], "offset": off, "y": rel_err(yv, ref[0]), "dx": None})
        out.append({"impl": IMPL["b1"], "offset": off, "y": None, "dx": rel_err(dxv, ref[1])})
        if torch is not None:
            xt, gt, bt, dyt = (torch.from_dlpack(a) for a in (x, g, b, dy))
            yt, mt, rt = torch.ops.aten.native_layer_norm(xt, [D], gt, bt, EPS)
            dxt = torch.ops.aten.native_layer_norm_backward(dyt, xt, [D], mt, rt, gt, bt, [True, False, False])[0]
            out.append({"impl": "torch", "offset": off, "y": rel_err(as_cupy(yt), ref[0]), "dx": rel_err(as_cupy(dxt), ref[1])})
        print("accuracy", [a for a in out if a["offset"] == off], flush=True)
    return out


def provenance(args, git_commit):
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        smi = ""
    return {
        "device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "driver": smi or str(cp.cuda.runtime.driverGetVersion()),
        "cuda": str(cp.cuda.runtime.runtimeGetVersion()),
        "cupy": cp.__version__,
        "torch": None if torch is None else torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit,
        "python": platform.python_version(),
        "sm_count": dev.attributes["MultiProcessorCount"],
    }


def main():
    _configure_torch_compile()
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="lnlib/results")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--versions", action="store_true",
                    help="also chapter 10's kernels, lnlib/cuda/versions.cu (float32)")
    args = ap.parse_args()
    git_commit = os.environ.get("LNLIB_GIT_COMMIT", "unknown")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    warm_up()
    copy_start = copy_gbps()
    print(f"copy: {copy_start:.0f} GB/s")
    rows = []
    Ds = D_LIST if not args.quick else [256, 4096, 65536]
    reps = 15 if not args.quick else 5
    compiled = {}

    for dtype in args.dtypes.split(","):
        s = ITEMSIZE[dtype]
        for D in Ds:
            M, x, g, b, dy = make_inputs(dtype, D)
            # the reference is computed from the values each implementation actually receives
            xs, gs, bs, dys = (as_cupy(a) for a in (x, g, b, dy))
            ref = reference64(xs, gs, bs, dys)

            def record(impl, pas, fn, check):
                err = check()
                ms = time_ms(fn, reps=reps)
                nbytes = min_bytes(M, D, s, pas == "backward")
                row = {"impl": impl, "pass": pas, "dtype": dtype, "rows": M, "cols": D, "seconds": ms * 1e-3,
                       "bytes": nbytes, "gbps": nbytes / (ms * 1e-3) / 1e9, "max_rel_error": err}
                rows.append(row)
                print(f"{dtype:8s} {M:7d} x {D:5d} {impl:14s} {pas:8s} {ms:8.3f} ms {row['gbps']:7.0f} GB/s "
                      f"{100 * row['gbps'] / copy_start:5.1f}%  err {err:.1e}", flush=True)

            # lnlib
            y, cache = lncuda.layer_norm_forward(x, g, b, EPS)
            record("lnlib", "forward", lambda: lncuda.layer_norm_forward(x, g, b, EPS), lambda: rel_err(as_cupy(y), ref[0]))
            grads = lncuda.layer_norm_backward(dy, cache)
            record("lnlib", "backward", lambda: lncuda.layer_norm_backward(dy, cache),
                   lambda: max(rel_err(as_cupy(a), r) for a, r in zip(grads, (ref[1], ref[2], ref[3]))))
            del y, cache, grads
            if args.versions and dtype == "float32":
                # chapter 10's kernels (versions.cu), each at the row lengths it takes
                for v in versions.FORWARD + versions.BACKWARD:
                    try:
                        versions.launch_config(v, D)
                    except ValueError:
                        continue  # this version cannot take this D
                    if v in versions.FORWARD:
                        yv = versions.forward(v, x, g, b, EPS)[0]
                        record(IMPL[v], "forward", lambda: versions.forward(v, x, g, b, EPS),
                               lambda: rel_err(yv, ref[0]))
                        del yv
                    else:  # timed from the statistics of the forward it follows (b0: v0, b1: v4)
                        _, mean, rstd = versions.forward(versions.SAVED_BY[v], x, g, b, EPS)
                        gv = versions.backward(v, dy, x, g, mean, rstd)
                        record(IMPL[v], "backward", lambda: versions.backward(v, dy, x, g, mean, rstd),
                               lambda: max(rel_err(a, r) for a, r in zip(gv, (ref[1], ref[2], ref[3]))))
                        del gv, mean, rstd
            if torch is not None:
                xt, gt, bt, dyt = (a if isinstance(a, torch.Tensor) else torch.from_dlpack(a) for a in (x, g, b, dy))
                yt, mt, rt = torch.ops.aten.native_layer_norm(xt, [D], gt, bt, EPS)
                record("torch", "forward", lambda: torch.ops.aten.native_layer_norm(xt, [D], gt, bt, EPS),
                       lambda: rel_err(as_cupy(yt), ref[0]))
                gr = torch.ops.aten.native_layer_norm_backward(dyt, xt, [D], mt, rt, gt, bt, [True, True, True])
                record("torch", "backward",
                       lambda: torch.ops.aten.native_layer_norm_backward(dyt, xt, [D], mt, rt, gt, bt, [True, True, True]),
                       lambda: max(rel_err(as_cupy(a), r) for a, r in zip(gr, (ref[1], ref[2], ref[3]))))
                del yt, mt, rt, gr
                if not args.no_compile:
                    fn = compiled.setdefault("f", torch.compile(lambda a, w, c: F.layer_norm(a, (a.shape[-1],), w, c, EPS)))
                    with torch.no_grad():
                        yc = fn(xt, gt, bt)
                        record("torch.compile", "forward", lambda: fn(xt, gt, bt), lambda: rel_err(as_cupy(yc), ref[0]))
                    del yc
                    xr, gr_, br = (t.detach().requires_grad_() for t in (xt, gt, bt))
                    yr = fn(xr, gr_, br)
                    gc = torch.autograd.grad(yr, (xr, gr_, br), dyt, retain_graph=True)
                    record("torch.compile", "backward", lambda: torch.autograd.grad(yr, (xr, gr_, br), dyt, retain_graph=True),
                           lambda: max(rel_err(as_cupy(a), r) for a, r in zip(gc, (ref[1], ref[2], ref[3]))))
                    del xr, gr_, br, yr, gc
                del xt, gt, bt, dyt
            del x, g, b, dy, xs, gs, bs, dys, ref
            cp.get_default_memory_pool().free_all_blocks()
            if torch is not None:
                torch.cuda.empty_cache()

    accuracy = measure_accuracy()
    copy_end = copy_gbps()
    print(f"copy at the end: {copy_end:.0f} GB/s")
    prov = provenance(args, git_commit)
    result = {"provenance": prov, "copy_gbps": copy_start, "copy_gbps_end": copy_end, "rows": rows,
              "accuracy": accuracy}
    name = f"gpu-{prov['device'].replace(' ', '_')}-{prov['date'][:10]}.json"
    (out / name).write_text(json.dumps(result, indent=1))
    print(f"wrote {out / name}")
    # the summary table, last, as % of the copy line
    print("\nimpl            pass      dtype     " + " ".join(f"{d:>6d}" for d in Ds))
    for impl in dict.fromkeys(r["impl"] for r in rows):
        for pas in ("forward", "backward"):
            for dtype in args.dtypes.split(","):
                cells = {r["cols"]: r for r in rows if r["impl"] == impl and r["pass"] == pas and r["dtype"] == dtype}
                if cells:
                    print(f"{impl:15s} {pas:9s} {dtype:9s} " + " ".join(
                        f"{100 * cells[d]['gbps'] / copy_start:5.0f}%" if d in cells else "     -" for d in Ds))


if __name__ == "__main__":
    main()
