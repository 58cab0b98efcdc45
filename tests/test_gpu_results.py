"""The recorded GPU benchmark: present, with provenance, and saying what the book quotes from it."""

import json

import pytest

from lnlib import gpu_results
from lnlib.cuda import kernels as K
from lnlib.cuda import versions
from lnlib.cuda.limits import ITEMSIZE, TOL


@pytest.fixture(scope="module")
def data():
    return gpu_results.load()


def test_provenance_complete(data):
    p = data["provenance"]
    assert gpu_results.REQUIRED <= set(p)
    assert len(p["git_commit"]) == 40 and p["device"] and p["date"].startswith("20")
    assert 1000 < data["copy_gbps"] < 10000


VERSION_IMPLS = {v.impl for v in versions.VERSIONS.values()}  # "lnlib.v0", ...: chapter 10's kernels


def test_every_row_verified_and_consistent(data):
    assert {r["impl"] for r in data["rows"]} <= {"lnlib", "torch", "torch.compile"} | VERSION_IMPLS
    for r in data["rows"]:
        assert abs(r["gbps"] - r["bytes"] / r["seconds"] / 1e9) < 1e-6 * r["gbps"]
        tol = TOL[r["dtype"]][1]  # the bound of the gradients, for both passes
        if r["impl"] in VERSION_IMPLS:  # earlier versions: dgamma by float32 atomics over 262144 rows
            tol *= 5
        assert r["max_rel_error"] < tol, r
        s = ITEMSIZE[r["dtype"]]
        assert r["bytes"] >= (2 if r["pass"] == "forward" else 3) * r["rows"] * r["cols"] * s
        assert r["rows"] * r["cols"] * s >= 256 << 20  # at least 256 MB moved per call


def test_accuracy_section(data):
    acc = {(a["impl"], a["offset"]): a for a in data["accuracy"]}
    for off in (0.0, 1e6):
        assert acc["lnlib", off]["y"] < TOL["float32"][0] and acc["lnlib", off]["dx"] < TOL["float32"][1]


def test_markdown_and_lookup(data):
    table = gpu_results.markdown_table(data, "forward", "float32")
    assert table.startswith("| implementation |") and "lnlib" in table
    assert set(gpu_results.percent(data, "lnlib", "forward", "float32")) == set(K.BENCH_D)
    assert "commit" in gpu_results.provenance_line(data)


def test_bad_file_rejected(tmp_path):
    (tmp_path / "gpu-x-2026.json").write_text(json.dumps({"provenance": {"date": "2026"}, "rows": []}))
    with pytest.raises(ValueError, match="provenance"):
        gpu_results.load(tmp_path / "gpu-x-2026.json")
