"""Measure the variants of benchmarks/experiments/variants.py against the chosen layouts.

    python benchmarks/experiments/tune_variants.py [--out lnlib/results/experiments/variants] [--dtypes float32,bfloat16]

What each variant is: README.md beside this file. Every variant (and the one-pass statistics on the
forward's row layouts) is checked against a float64 reference (and, backward, for bitwise-identical
dgamma/dbeta over two runs) before it is timed, in the same run and on the same data as the chosen
layout, which runs lnlib.cuda's own kernel, at the shapes of benchmarks/gpu.py. Writes
variants-<device>-<date>.json with provenance; a variant moves into lnlib/cuda/layernorm.cu only on
such a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import cupy as cp  # noqa: E402

from benchmarks.experiments import variants as X  # noqa: E402
from benchmarks.gpu import (  # noqa: E402
    EPS, as_cupy, copy_gbps, make_inputs, min_bytes, provenance, reference64, rel_err, time_ms, warm_up)
from lnlib import cuda as lncuda  # noqa: E402
from lnlib.cuda import api  # noqa: E402
from lnlib.cuda import kernels as K  # noqa: E402
from lnlib.cuda.limits import ITEMSIZE, TOL  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="lnlib/results/experiments/variants")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--D", default=",".join(map(str, K.BENCH_D)))
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    warm_up()
    copy = copy_gbps()
    print(f"copy {copy:.0f} GB/s", flush=True)
    cc = api._cc(cp.cuda.Device().id)
    rows = []
    for dtype in args.dtypes.split(","):
        if dtype != "float32" and torch is None:
            print(f"{dtype}: needs torch, skipped")
            continue
        s = ITEMSIZE[dtype]
        for D in map(int, args.D.split(",")):
            M, x, g, b, dy = make_inputs(dtype, D)
            ref = reference64(*(as_cupy(a) for a in (x, g, b, dy)))
            _, cache = lncuda.layer_norm_forward(x, g, b, EPS)
            for backward in (False, True):
                nbytes = min_bytes(M, D, s, backward)
                measured = X.variants(D, dtype, backward, cc)
                one = None if backward else X.onepass(D, dtype, cc)
                measured += [one] if one is not None else []
                for i, v in enumerate(measured):
                    inst = X.runs(dtype, v, backward)
                    row = {"dtype": dtype, "rows": M, "cols": D, "pass": "backward" if backward else "forward",
                           "name": inst.name, "config": v.label(), "chosen": i == 0, "bytes": nbytes}
                    try:
                        if backward:
                            fn = lambda: X.backward(dy, cache, v)  # noqa: E731
                            out, again = fn(), fn()
                            err = max(rel_err(as_cupy(a), r) for a, r in zip(out, ref[1:]))
                            same = all(cp.asnumpy(as_cupy(a)).tobytes() == cp.asnumpy(as_cupy(c)).tobytes()
                                       for a, c in zip(out[1:], again[1:]))
                            ok = err < TOL[dtype][1] and same
                            del out, again
                        else:
                            fn = lambda: X.forward(x, g, b, EPS, v)  # noqa: E731
                            err = rel_err(as_cupy(fn()[0]), ref[0])
                            same, ok = True, err < TOL[dtype][0]
                        row.update(max_rel_error=err, deterministic=same, correct=ok)
                        if ok:  # a wrong variant is not timed: it could never be chosen
                            ms = time_ms(fn, reps=args.reps)
                            kern = K.kernel_of(inst)
                            row.update(seconds=ms * 1e-3, gbps=nbytes / (ms * 1e-3) / 1e9, regs=kern.num_regs,
                                       spill_bytes=kern.local_size_bytes)
                    except Exception as exc:  # a layout that does not launch is reported, not fatal
                        row.update(error=f"{type(exc).__name__}: {str(exc)[:200]}")
                    rows.append(row)
                    pct = f"{100 * row['gbps'] / copy:5.1f}%" if "gbps" in row else "  --- "
                    print(f"{dtype:8s} D={D:6d} {row['pass'][:3]} {pct} err {row.get('max_rel_error', float('nan')):.1e}"
                          f"{'' if row.get('correct', False) else ' WRONG/FAILED'} regs {row.get('regs', '-')}"
                          f"  {'*' if i == 0 else ' '} {row['config']}  {row.get('error', '')}", flush=True)
            del x, g, b, dy, ref, cache
            cp.get_default_memory_pool().free_all_blocks()
            if torch is not None:
                torch.cuda.empty_cache()
    copy_end = copy_gbps()
    prov = provenance(args, os.environ.get("LNLIB_GIT_COMMIT", "unknown"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"variants-{prov['device'].replace(' ', '_')}-{prov['date'][:10]}.json"
    path.write_text(json.dumps({"provenance": prov, "copy_gbps": copy, "copy_gbps_end": copy_end, "rows": rows}, indent=1))
    print(f"copy at the end {copy_end:.0f} GB/s; wrote {path}")


if __name__ == "__main__":
    main()
