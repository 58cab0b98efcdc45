"""Reading and drawing the recorded GPU benchmark (``lnlib/results/gpu-*.json``).

The JSON files are written by ``benchmarks/gpu.py`` on a real GPU and never edited; the book's GPU
chapter reads them through these helpers when it has no GPU of its own. They ship inside the
package (package data), so the chapter works from an installed ``lnlib`` as from a clone.
"""

from __future__ import annotations

from pathlib import Path

from . import _recorded
from ._recorded import RESULTS, ROW_FIELDS  # noqa: F401 (part of this module's interface)

REQUIRED = {"device", "driver", "cuda", "cupy", "torch", "date", "command", "git_commit"}


def latest(directory: Path | str = RESULTS) -> Path:
    """The most recent gpu-*.json in ``directory`` (by the date in its provenance)."""
    return _recorded.latest("gpu", directory)


def load(path: Path | str | None = None) -> dict:
    """Load a GPU benchmark JSON and check that it has its provenance and well-formed rows."""
    return _recorded.load(path or latest(), REQUIRED)


def percent(data: dict, impl: str, pas: str, dtype: str) -> dict[int, float]:
    """{D: percent of the copy line} for one implementation, pass and dtype."""
    return {r["cols"]: 100 * r["gbps"] / data["copy_gbps"] for r in data["rows"]
            if r["impl"] == impl and r["pass"] == pas and r["dtype"] == dtype}


def impls(data: dict) -> list[str]:
    """Implementations in the order they were measured."""
    return list(dict.fromkeys(r["impl"] for r in data["rows"]))


def markdown_table(data: dict, pas: str, dtype: str) -> str:
    """A Markdown table: one line per implementation, one column per D, cells in % of the copy line."""
    Ds = sorted({r["cols"] for r in data["rows"]})
    lines = ["| implementation | " + " | ".join(f"D = {d}" for d in Ds) + " |", "|---" * (len(Ds) + 1) + "|"]
    for impl in impls(data):
        p = percent(data, impl, pas, dtype)
        if p:
            lines.append(f"| {impl} | " + " | ".join(f"{p[d]:.0f}%" if d in p else "–" for d in Ds) + " |")
    return "\n".join(lines)


def provenance_line(data: dict) -> str:
    """One line naming where and how the numbers were measured."""
    p = data["provenance"]
    return (f"{p['device']}, driver {p['driver']}, CUDA runtime {p['cuda']}, CuPy {p['cupy']}, PyTorch {p['torch']}; "
            f"measured {p['date']} by `{p['command']}` at commit {p['git_commit'][:10]}; copy line "
            f"{data['copy_gbps']:.0f} GB/s at the start, {data.get('copy_gbps_end', float('nan')):.0f} GB/s at the end")
