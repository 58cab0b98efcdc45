"""Reading the recorded CPU benchmark (``lnlib/results/cpu-*.json``).

The JSON files are written by ``benchmarks/cpu.py`` and never edited; the chapter "Making NumPy
fast" reads them through these helpers, so its numbers are those of one recorded run, with its
provenance, whatever machine builds the book. They ship inside the package (package data).
"""

from __future__ import annotations

from pathlib import Path

from . import _recorded
from ._recorded import RESULTS, ROW_FIELDS  # noqa: F401 (part of this module's interface)

REQUIRED = {"device", "cores", "numpy", "blas", "torch", "date", "command", "git_commit"}


def latest(directory: Path | str = RESULTS) -> Path:
    """The most recent cpu-*.json in ``directory`` (by the date in its provenance)."""
    return _recorded.latest("cpu", directory)


def load(path: Path | str | None = None) -> dict:
    """Load a CPU benchmark JSON and check that it has its provenance and well-formed rows."""
    return _recorded.load(path or latest(), REQUIRED)


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
