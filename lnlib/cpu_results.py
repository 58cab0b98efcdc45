"""Reading the recorded CPU benchmarks (``lnlib/results/cpu-*.json``).

The JSON files are written by ``benchmarks/cpu.py`` and never edited; the chapter "Making NumPy
fast" reads them through these helpers, so its numbers are those of recorded runs, each with its
provenance, whatever machine builds the book. There is one file per recorded machine and run
(:func:`records`); they ship inside the package (package data).

Records written before ``benchmarks/cpu.py`` recorded the caches and vector features lack those
provenance keys; :func:`caches` and :func:`vector_features` then return ``None``.
"""

from __future__ import annotations

import re
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


def records(directory: Path | str = RESULTS) -> list[dict]:
    """Every cpu-*.json in ``directory``, loaded and checked, oldest first (by its provenance date)."""
    out = [load(p) for p in Path(directory).glob("cpu-*.json")]
    if not out:
        raise FileNotFoundError(f"no cpu-*.json in {directory}")
    return sorted(out, key=lambda d: d["provenance"]["date"])


def machine(data: dict) -> str:
    """A short name for the recorded CPU: its model name without trademarks and filler words.

    >>> machine({"provenance": {"device": "Intel(R) Xeon(R) Processor"}})
    'Intel Xeon'
    >>> machine({"provenance": {"device": "AMD EPYC 7B13 64-Core Processor"}})
    'AMD EPYC 7B13 64-Core'
    """
    name = re.sub(r"\((R|TM|tm)\)", "", data["provenance"]["device"])
    name = re.sub(r"\b(CPU|Processor)\b|@.*$", "", name)
    return " ".join(name.split()) or "unknown CPU"


def labels(recs: list[dict]) -> list[str]:
    """One label per record: :func:`machine`, with the date added where two records share a machine."""
    names = [machine(d) for d in recs]
    return [f"{n} ({d['provenance']['date'][:10]})" if names.count(n) > 1 else n for n, d in zip(names, recs)]


def caches(data: dict) -> dict | None:
    """``{"L1d": {"bytes": ..., "instances": ...} or None, "L2": ..., "L3": ...}``, or ``None`` if not recorded."""
    return data["provenance"].get("caches")


def vector_features(data: dict) -> dict | None:
    """The vector features NumPy detected on the recorded CPU (``{"AVX512F": True, ...}``), or ``None``."""
    return data["provenance"].get("vector_features")


#: the widest vector extension named in a record, NumPy's name first, widest first
_WIDEST = (("SVE", "SVE"), ("AVX512F", "AVX-512"), ("AVX2", "AVX2"), ("ASIMD", "ASIMD"), ("NEON", "NEON"),
           ("SSE42", "SSE4.2"))


def vector_line(data: dict) -> str:
    """The widest vector extension the recorded CPU has, and the kernels PyTorch chose, as one short line.

    >>> vector_line({"provenance": {"vector_features": {"AVX2": True, "AVX512F": True},
    ...                             "torch_cpu_capability": "AVX512"}})
    "AVX-512 (PyTorch's kernels: AVX512)"
    >>> vector_line({"provenance": {}})
    'not recorded'
    """
    features = vector_features(data)
    if features is None:
        return "not recorded"
    widest = next((label for key, label in _WIDEST if features.get(key)), "none of " + ", ".join(features))
    torch = data["provenance"].get("torch_cpu_capability")
    return f"{widest} (PyTorch's kernels: {torch})" if torch else widest


def sizes_line(data: dict) -> str:
    """The caches as one short line, such as ``L1d 48 KiB x 2, L2 2 MiB x 2, L3 32 MiB x 1``."""
    c = caches(data)
    if c is None:
        return "not recorded"

    def size(n):
        return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n // 2**10} KiB"

    parts = [f"{k} {size(v['bytes'])} x {v['instances']}" for k, v in c.items() if v]
    return ", ".join(parts) or "not recorded"


def sweep(data: dict) -> list[int]:
    """The row lengths D at which the record timed every implementation (all ten, or the goal's three)."""
    return sorted({r["cols"] for r in data["rows"] if r["impl"] == "lnlib"})


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


def goal_ratios(data: dict) -> dict[tuple[int, int, str], float]:
    """{(M, D, pass): lnlib's fastest time over PyTorch's} at the goal shapes, as recorded."""
    return {(g["rows"], g["cols"], g["pass"]): g["ratio"] for g in data["goal"]}


def provenance_line(data: dict) -> str:
    """One line naming where and how the numbers were measured."""
    p = data["provenance"]
    return (f"{p['device']}, {p['cores']} cores, NumPy {p['numpy']} ({p['blas']}), PyTorch {p['torch']}; "
            f"measured {p['date'][:10]} at commit {p['git_commit'][:10]}; copy line "
            f"{data['copy_gbps']:.1f} GB/s at the start, {data['copy_gbps_end']:.1f} GB/s at the end")
