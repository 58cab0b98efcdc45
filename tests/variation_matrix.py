"""Run the suite as other machines would: other vector widths, BLAS kernels and thread counts.

A machine's arithmetic differs from another's by its SIMD width (which reorders sums), its BLAS
kernel and its thread count, and a test's bound has to hold on all of them. This script runs the
pytest suite once per variation below, with ``tests/margins.py`` recording how much of its bound
each floating-point assertion used, and prints the assertions that came closest, worst over all
variations. Every variation must pass.

    python tests/variation_matrix.py                # the whole matrix (make variations)
    python tests/variation_matrix.py --ci           # one non-default combination, the
                                                    # floating-point-sensitive tests (.ci/run)

The variations emulate what can be emulated on one CPU:

- ``ATEN_CPU_CAPABILITY=default`` / ``avx2``: PyTorch's scalar and AVX2 kernels instead of AVX-512;
- ``NPY_DISABLE_CPU_FEATURES``: NumPy's AVX-512 loops switched off (only where the CPU has them);
- ``OPENBLAS_CORETYPE``: two other OpenBLAS kernels (Haswell, as on AMD Zen; Sandybridge, AVX only);
- ``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1`` (one PyTorch thread), ``LNLIB_NUM_THREADS=1``, ``3``;
- three hypothesis seeds with the ``seeded`` profile (same size as CI's, not derandomised).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import margins  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# The NVRTC compile tests take minutes and compute nothing in floating point on the CPU.
SLOW = ["--ignore=tests/test_cuda_compile.py", "--ignore=tests/test_cuda_limits.py",
        "--deselect=tests/test_experiments.py::test_every_variant_compiles", "--ignore=tests/test_browser.py"]

FLOATING_POINT = margins.FLOATING_POINT


def avx512_features() -> str | None:
    """NumPy's dispatched AVX-512 targets present on this CPU, in NPY_DISABLE_CPU_FEATURES's spelling."""
    try:  # NumPy 2 moved the module; requirements.txt admits NumPy 1.26
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    names = [n for n in __cpu_dispatch__ if __cpu_features__.get(n) and ("512" in n or n == "X86_V4")]
    return " ".join(names) or None


def matrix() -> list[tuple[str, dict[str, str], list[str]]]:
    runs = [
        ("default", {}, []),
        ("ATEN_CPU_CAPABILITY=default", {"ATEN_CPU_CAPABILITY": "default"}, []),
        ("ATEN_CPU_CAPABILITY=avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, []),
    ]
    off = avx512_features()
    if off:
        runs.append(("NumPy without AVX-512", {"NPY_DISABLE_CPU_FEATURES": off}, []))
    runs += [
        ("OPENBLAS_CORETYPE=Haswell", {"OPENBLAS_CORETYPE": "Haswell"}, []),
        ("OPENBLAS_CORETYPE=Sandybridge", {"OPENBLAS_CORETYPE": "Sandybridge"}, []),
        ("OPENBLAS_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1"}, []),
        ("OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, []),
        ("LNLIB_NUM_THREADS=1", {"LNLIB_NUM_THREADS": "1"}, []),
        ("LNLIB_NUM_THREADS=3", {"LNLIB_NUM_THREADS": "3"}, []),
    ]
    for seed in (1, 2, 3):
        runs.append((f"hypothesis seed {seed}", {"LNLIB_HYPOTHESIS": "seeded"}, [f"--hypothesis-seed={seed}"]))
    return runs


def ci_combination() -> dict[str, str]:
    """One non-default machine at once: scalar PyTorch, no AVX-512 in NumPy, another BLAS, 3 threads."""
    env = {"ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Haswell", "LNLIB_NUM_THREADS": "3",
           "OMP_NUM_THREADS": "1"}
    off = avx512_features()
    if off:
        env["NPY_DISABLE_CPU_FEATURES"] = off
    return env


def run(label: str, env: dict[str, str], args: list[str], record: Path) -> tuple[int, float]:
    full = {**os.environ, **env, "LNLIB_MARGINS": str(record), "LNLIB_VARIATION": label}
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "tests.margins", "-p", "no:cacheprovider",
                            *args], cwd=ROOT, env=full)
    return code, time.perf_counter() - start


def report(record: Path, top: int) -> None:
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    worst: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["test"], r["assertion"])
        if key not in worst or r["use"] > worst[key]["use"]:
            worst[key] = r
    print(f"\nClosest to their bounds, worst over {len({r['variation'] for r in rows})} variation(s) "
          f"({len(worst)} assertions; 1.0 = the bound met exactly):")
    for r in sorted(worst.values(), key=lambda r: -r["use"])[:top]:
        print(f"  {r['use']:9.3g}  {r['assertion'][:80]:80s}  [{r['variation']}]  {r['test'][:60]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="one non-default combination, floating-point tests")
    parser.add_argument("--top", type=int, default=40, help="how many of the closest assertions to print")
    parser.add_argument("--out", type=Path, help="keep the JSON-lines record here")
    opts = parser.parse_args()

    record = opts.out or Path(tempfile.mkstemp(suffix=".jsonl")[1])
    record.write_text("")
    runs = [("ci: " + " ".join(f"{k}={v}" for k, v in ci_combination().items()), ci_combination(),
             FLOATING_POINT)] if opts.ci else [(label, env, SLOW + args) for label, env, args in matrix()]
    failed = []
    for label, env, args in runs:
        print(f"\n=== {label}", flush=True)
        code, seconds = run(label, env, args, record)
        print(f"=== {label}: exit {code} in {seconds:.0f} s", flush=True)
        if code != 0:  # exit 5 (nothing collected) fails too
            failed.append(label)
    report(record, opts.top)
    if failed:
        print("\nFAILED under: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
