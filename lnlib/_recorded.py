"""Finding and loading a recorded benchmark JSON, shared by :mod:`lnlib.cpu_results` and
:mod:`lnlib.gpu_results`: the newest file by its provenance date, checked for provenance and rows."""

from __future__ import annotations

import json
from pathlib import Path

#: where the recorded results live: inside the package, so an installed lnlib has them too
RESULTS = Path(__file__).resolve().parent / "results"
ROW_FIELDS = {"impl", "pass", "dtype", "rows", "cols", "seconds", "bytes", "gbps"}


def latest(prefix: str, directory: Path | str = RESULTS) -> Path:
    """The most recent ``<prefix>-*.json`` in ``directory`` (by the date in its provenance)."""
    files = sorted(Path(directory).glob(f"{prefix}-*.json"))
    if not files:
        raise FileNotFoundError(f"no {prefix}-*.json in {directory}")
    return max(files, key=lambda p: json.loads(p.read_text())["provenance"]["date"])


def load(path: Path | str, required: set[str]) -> dict:
    """Load a benchmark JSON and check that it has the ``required`` provenance and well-formed rows."""
    data = json.loads(Path(path).read_text())
    missing = required - set(data["provenance"])
    if missing:
        raise ValueError(f"benchmark file lacks provenance fields {sorted(missing)}")
    for row in data["rows"]:
        if ROW_FIELDS - set(row):
            raise ValueError(f"benchmark row lacks fields {sorted(ROW_FIELDS - set(row))}: {row}")
    return data
