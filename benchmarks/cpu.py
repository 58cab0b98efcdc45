"""LayerNorm on the CPU: lnlib, the step-by-step reference, a typical version and PyTorch, side by side.

    python benchmarks/cpu.py [--out lnlib/results] [--quick] [--reps 7]

For each shape (a sweep of D at 64 MiB of float32 input, which includes the goal shapes (4096, 4096),
(65536, 256) and (512, 32768)) it times the forward and the backward (dx, dgamma and dbeta) of

- ``lnlib``: :func:`lnlib.layer_norm_forward` / ``backward`` (blocked, threaded, float64 inside);
- ``reference``: :mod:`lnlib.reference`, the book's step-by-step version, run in float32;
- ``typical``: :mod:`lnlib.typical`, a typical implementation found online, in float32;
- ``torch``: ``torch.nn.functional.layer_norm`` and its autograd backward, on the CPU;

and a NumPy copy of the same array in the same run (the copy line). Then, at three shapes, lnlib with
one setting changed at a time (one thread, NumPy's default buffer, other block sizes, plain
broadcasts on short rows): what each idea of the chapter "Making NumPy fast" is worth, the variants
taking turns call by call. Each timing is the fastest of ``--reps`` calls after a warm-up call; lnlib and PyTorch take turns call by call, so a change in the
machine's speed during the run hits both. Throughput counts the bytes each pass must move at least:
forward reads x and writes y, backward reads x and dy and writes dx (plus gamma and beta).

Writes ``cpu-<date>.json`` with provenance (CPU, cores, its data caches and vector features, NumPy,
BLAS, PyTorch and the vector kernels it chose, date, command, git commit). The numbers are never
edited by hand; the book's chapter "Making NumPy fast" reads every such file, one machine each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lnlib import blocked, layer_norm_backward, layer_norm_forward, layernorm, reference, typical  # noqa: E402

try:
    import torch
except ImportError:  # the comparison is skipped, and says so in the JSON
    torch = None

#: elements per benchmark array: 2**24 float32 = 64 MiB, far beyond any cache
ELEMENTS = 2**24
D_SWEEP = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
#: the shapes of the speed goal (lnlib at most twice PyTorch's time, forward and backward)
GOAL_SHAPES = ((4096, 4096), (65536, 256), (512, 32768))
GOAL_RATIO = 2.0
EPS = 1e-5


def _best(times):
    return min(times), statistics.median(times)


def copy_gbps(x: np.ndarray, reps: int) -> float:
    """NumPy's copy of ``x`` into a preallocated array: read once, written once."""
    out = np.empty_like(x)
    np.copyto(out, x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.copyto(out, x)
        times.append(time.perf_counter() - t)
    return 2 * x.nbytes / min(times) / 1e9


def _numpy_impls():
    def lnlib_fwd(x, g, b):
        return layer_norm_forward(x, g, b, EPS)

    def ref_fwd(x, g, b):
        return reference.forward(x, g, b, EPS)

    def typ_fwd(x, g, b):  # written for (B, T, D) inputs
        return typical.forward(x[None], g, b)

    def typ_bwd(dy, cache):
        return typical.backward(dy[None], cache)

    return {
        "lnlib": (lnlib_fwd, layer_norm_backward),
        "reference": (ref_fwd, reference.backward),
        "typical": (typ_fwd, typ_bwd),
    }


def _torch_impl(x, g, b, dy):
    xt = torch.from_numpy(x).requires_grad_()
    gt, bt = torch.from_numpy(g).requires_grad_(), torch.from_numpy(b).requires_grad_()
    dyt = torch.from_numpy(dy)
    D = x.shape[-1]

    def fwd():
        with torch.no_grad():
            return torch.nn.functional.layer_norm(xt, (D,), gt, bt, EPS)

    y = torch.nn.functional.layer_norm(xt, (D,), gt, bt, EPS)

    def bwd():
        return torch.autograd.grad(y, (xt, gt, bt), dyt, retain_graph=True)

    return fwd, bwd


def measure(M: int, D: int, reps: int, slow_reps: int, rng) -> list[dict]:
    x = rng.standard_normal((M, D), dtype=np.float32)
    g, b = rng.standard_normal(D, dtype=np.float32), rng.standard_normal(D, dtype=np.float32)
    dy = rng.standard_normal((M, D), dtype=np.float32)
    s = x.itemsize
    nbytes = {"forward": 2 * M * D * s + 2 * D * s, "backward": 3 * M * D * s + 2 * D * s}
    calls = {}
    for name, (fwd, bwd) in _numpy_impls().items():
        _, cache = fwd(x, g, b)
        calls[name] = {"forward": (lambda fwd=fwd: fwd(x, g, b)), "backward": (lambda bwd=bwd, c=cache: bwd(dy, c))}
    if torch is not None:
        tf, tb = _torch_impl(x, g, b, dy)
        calls["torch"] = {"forward": tf, "backward": tb}
    rows = []
    for pas in ("forward", "backward"):
        times = {name: [] for name in calls}
        for name in calls:
            calls[name][pas]()  # warm-up: page faults, thread pools, lazy initialisation
        # lnlib and torch take turns, call by call; the slow versions run fewer times
        for r in range(reps):
            for name in calls:
                if name in ("lnlib", "torch") or r < slow_reps:
                    t = time.perf_counter()
                    calls[name][pas]()
                    times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            best, median = _best(ts)
            rows.append({"impl": name, "pass": pas, "dtype": "float32", "rows": M, "cols": D, "seconds": best,
                         "median_seconds": median, "calls": len(ts), "bytes": nbytes[pas],
                         "gbps": nbytes[pas] / best / 1e9})
    return rows


#: what each ablation changes from the shipped settings: (name, block bytes, threads, NumPy buffer,
#: short-row broadcasts as ``v[:, None]`` and ``gamma`` instead of repeated and tiled)
ABLATIONS = (
    ("shipped", None, None, None, False),
    ("one thread", None, 1, None, False),
    ("NumPy's default buffer", None, None, 8192, False),
    *((f"blocks of {b // 1024} KiB", b, None, None, False) for b in (8 * 1024, 32 * 1024, 128 * 1024, 512 * 1024,
                                                                     8 * 2**20, 32 * 2**20)),
)
SHORT_ROW_ABLATIONS = (ABLATIONS[0], ("plain broadcasts", None, None, None, True))
#: shapes and the ablations run at each
ABLATION_SHAPES = {(4096, 4096): ABLATIONS, (65536, 256): ABLATIONS, (262144, 64): SHORT_ROW_ABLATIONS}


def ablation(M: int, D: int, reps: int, rng, variants=ABLATIONS) -> list[dict]:
    """lnlib's forward and backward with one setting changed at a time (see :data:`ABLATIONS`).

    The variants take turns call by call (after one warm-up round), so that a slow spell of the
    machine hits all of them rather than the one that happened to be running.
    """
    x = rng.standard_normal((M, D), dtype=np.float32)
    g, b = rng.standard_normal(D, dtype=np.float32), rng.standard_normal(D, dtype=np.float32)
    dy = rng.standard_normal((M, D), dtype=np.float32)
    shipped = (blocked.BLOCK_BYTES, blocked.BUFSIZE, os.environ.get("LNLIB_NUM_THREADS"),
               layernorm.REPEAT_BELOW, layernorm.TILE_WIDTH)

    def configure(block_bytes, threads, bufsize, plain):
        blocked.BLOCK_BYTES = block_bytes or shipped[0]
        blocked.BUFSIZE = bufsize or shipped[1]
        layernorm.REPEAT_BELOW, layernorm.TILE_WIDTH = (0, 0) if plain else shipped[3:]
        if threads:
            os.environ["LNLIB_NUM_THREADS"] = str(threads)
        elif shipped[2] is None:
            os.environ.pop("LNLIB_NUM_THREADS", None)
        else:
            os.environ["LNLIB_NUM_THREADS"] = shipped[2]

    _, cache = layer_norm_forward(x, g, b, EPS)
    calls = (("forward", lambda: layer_norm_forward(x, g, b, EPS)), ("backward", lambda: layer_norm_backward(dy, cache)))
    times = {(v[0], pas): [] for v in variants for pas, _ in calls}
    settings = {}
    try:
        for r in range(reps + 1):  # round 0 warms up
            for name, *setting in variants:
                configure(*setting)
                settings[name] = {"block_bytes": blocked.BLOCK_BYTES, "threads": blocked.threads(),
                                  "bufsize": blocked.BUFSIZE, "repeat_below": layernorm.REPEAT_BELOW,
                                  "tile_width": layernorm.TILE_WIDTH}
                for pas, call in calls:
                    t = time.perf_counter()
                    call()
                    if r:
                        times[(name, pas)].append(time.perf_counter() - t)
    finally:
        configure(None, None, None, False)
    return [{"variant": name, "pass": pas, "rows": M, "cols": D, "seconds": min(ts),
             "median_seconds": statistics.median(ts), **settings[name]} for (name, pas), ts in times.items()]


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def _blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


#: the data caches recorded, as Linux names them (sysfs level and type)
CACHE_LEVELS = {"L1d": (1, "Data"), "L2": (2, "Unified"), "L3": (3, "Unified")}
#: NumPy's names of the vector extensions its loops dispatch on, x86 then Arm; those NumPy knows on the
#: machine are recorded, True where the CPU has them
VECTOR_FEATURES = ("SSE42", "AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VL", "AVX512_SKX", "AVX512_ICL",
                   "AVX512_SPR", "AVX512FP16", "NEON", "ASIMD", "ASIMDHP", "SVE")


def _size(text: str) -> int:
    """Bytes of a cache size as Linux writes it: ``48K``, ``2048K``, ``32M``."""
    text = text.strip().upper().rstrip("B").rstrip("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def caches(sysfs: Path = Path("/sys/devices/system/cpu")) -> dict:
    """``{"L1d": {"bytes": per instance, "instances": how many}, "L2": ..., "L3": ...}``, ``None`` where unknown.

    Read from Linux's sysfs: every cache of every CPU, an instance being a distinct set of CPUs that
    share it (two cores with a private L2 each: two instances; one L3 for all: one).
    """
    found: dict[str, dict[str, set]] = {name: {"bytes": set(), "shared": set()} for name in CACHE_LEVELS}
    for index in sorted(sysfs.glob("cpu[0-9]*/cache/index[0-9]*")):
        try:
            level, kind = int((index / "level").read_text()), (index / "type").read_text().strip()
            size, shared = _size((index / "size").read_text()), (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        for name, want in CACHE_LEVELS.items():
            if (level, kind) == want:
                found[name]["bytes"].add(size)
                found[name]["shared"].add(shared)
    return {name: ({"bytes": max(f["bytes"]), "instances": len(f["shared"])} if f["bytes"] else None)
            for name, f in found.items()}


def vector_features() -> dict | None:
    """{feature: present} for the extensions of :data:`VECTOR_FEATURES` NumPy knows on this machine."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return None
    return {name: bool(features[name]) for name in VECTOR_FEATURES if name in features}


def provenance(git_commit: str) -> dict:
    return {
        "device": _cpu_name(),
        "cores": blocked.threads(),
        "lnlib_threads": blocked.threads(),
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "numpy": np.__version__,
        "blas": _blas(),
        "torch": None if torch is None else torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit,
        "block_bytes": blocked.BLOCK_BYTES,
        "chunks": blocked.CHUNKS,
        "caches": caches(),
        "vector_features": vector_features(),
        # the vector kernels PyTorch's CPU build chose on this machine (such as "AVX2" or "AVX512")
        "torch_cpu_capability": None if torch is None else getattr(torch.backends.cpu, "get_cpu_capability",
                                                                   lambda: None)(),
    }


def goal(rows: list[dict]) -> list[dict]:
    """lnlib's time over PyTorch's at each goal shape and pass, and whether it is within GOAL_RATIO."""
    out = []
    by = {(r["impl"], r["pass"], r["rows"], r["cols"]): r["seconds"] for r in rows}
    for M, D in GOAL_SHAPES:
        for pas in ("forward", "backward"):
            if ("torch", pas, M, D) in by and ("lnlib", pas, M, D) in by:
                ratio = by[("lnlib", pas, M, D)] / by[("torch", pas, M, D)]
                out.append({"rows": M, "cols": D, "pass": pas, "ratio": ratio, "met": ratio <= GOAL_RATIO})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="lnlib/results")
    ap.add_argument("--quick", action="store_true", help="the three goal shapes only")
    ap.add_argument("--reps", type=int, default=9, help="calls of lnlib and torch per pass and shape")
    ap.add_argument("--slow-reps", type=int, default=2, help="calls of the reference and typical versions")
    args = ap.parse_args()
    git_commit = os.environ.get("LNLIB_GIT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    rng = np.random.default_rng(0)
    shapes = GOAL_SHAPES if args.quick else tuple((ELEMENTS // D, D) for D in D_SWEEP)
    probe = rng.standard_normal(ELEMENTS, dtype=np.float32)
    copy_start = copy_gbps(probe, 20)
    print(f"copy {copy_start:.1f} GB/s", flush=True)
    rows = []
    for M, D in shapes:
        new = measure(M, D, args.reps, args.slow_reps, rng)
        rows += new
        print(f"({M}, {D}) " + "  ".join(f"{r['impl']} {r['pass'][:3]} {r['seconds'] * 1e3:.1f} ms" for r in new), flush=True)
    ablations = []
    for (M, D), variants in ABLATION_SHAPES.items():
        new = ablation(M, D, args.reps, rng, variants)
        ablations += new
        print(f"({M}, {D}) " + "  ".join(f"{r['variant']} {r['pass'][:3]} {r['seconds'] * 1e3:.1f} ms" for r in new),
              flush=True)
    copy_end = copy_gbps(probe, 20)
    data = {"provenance": provenance(git_commit), "copy_gbps": copy_start, "copy_gbps_end": copy_end,
            "elements": ELEMENTS, "rows": rows, "ablations": ablations, "goal": goal(rows), "goal_ratio": GOAL_RATIO}
    for g in data["goal"]:
        print(f"goal ({g['rows']}, {g['cols']}) {g['pass']}: lnlib / torch = {g['ratio']:.2f} "
              f"{'met' if g['met'] else 'NOT met'}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cpu-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
