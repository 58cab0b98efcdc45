"""Reading the recorded CPU benchmark (``lnlib/results/cpu-*.json``).

The JSON files are written by ``benchmarks/cpu.py`` and never edited; the chapter "Making NumPy
fast" reads them through these helpers, so its numbers are those of one recorded run, with its
provenance, whatever machine builds the book. They ship inside the package (package data).
"""

from __future__ import annotations

import json
from pathlib import Path

#: where the recorded results live: inside the package, so an installed lnlib has them too
RESULTS = Path(__file__).resolve().parent / "results"
REQUIRED = {"device", "cores", "numpy", "blas", "torch", "date", "command", "git_commit"}
ROW_FIELDS = {"impl", "pass", "dtype", "rows", "cols", "seconds", "bytes", "gbps"}


def latest(directory: Path | str = RESULTS) -> Path:
    """The most recent cpu-*.json in ``directory`` (by the date in its provenance)."""
    files = sorted(Path(directory).glob("cpu-*.json"))
    if not files:
        raise FileNotFoundError(f"no cpu-*.json in {directory}")
    return max(files, key=lambda p: json.loads(p.read_text())["provenance"]["date"])


def load(path: Path | str | None = None) -> dict:
    """Load a CPU benchmark JSON and check that it has its provenance and well-formed rows."""
    data = json.loads(Path(path or latest()).read_text())
    missing = REQUIRED - set(data["provenance"])
    if missing:
        raise ValueError(f"benchmark file lacks provenance fields {sorted(missing)}")
    for row in data["rows"]:
        if ROW_FIELDS - set(row):
            raise ValueError(f"benchmark row lacks fields {sorted(ROW_FIELDS - set(row))}: {row}")
    return data


def seconds(data: dict, impl: str, pas: str) -> dict[int, float]:
    """{D: fastest seconds} for one implementation and pass."""
    return {r["cols"]: r["seconds"] for r in data["rows"] if r["impl"] == impl and r["pass"] == pas}


def gbps(data: dict, impl: str, pas: str) -> dict[int, float]:
    """{D: GB/s} (the bytes a pass must move over its fastest time) for one implementation and pass."""
    return {r["cols"]: r["gbps"] for r in data["rows"] if r["impl"] == impl and r["pass"] == pas}


def ablation(data: dict, variant: str, pas: str, cols: int) -> float:
    """Fastest seconds of lnlib with one setting changed (see ``benchmarks/cpu.py``), at row length ``cols``."""
    return next(r["seconds"] for r in data["ablations"]
                if r["variant"] == variant and r["pass"] == pas and r["cols"] == cols)


def provenance_line(data: dict) -> str:
    """One line naming where and how the numbers were measured."""
    p = data["provenance"]
    return (f"{p['device']}, {p['cores']} cores, NumPy {p['numpy']} ({p['blas']}), PyTorch {p['torch']}; "
            f"measured {p['date'][:10]} at commit {p['git_commit'][:10]}; copy line "
            f"{data['copy_gbps']:.1f} GB/s at the start, {data['copy_gbps_end']:.1f} GB/s at the end")
