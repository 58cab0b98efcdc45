"""Every recorded CPU benchmark (lnlib/results/cpu-*.json): loadable, with provenance, in date order.

The chapter "Making NumPy fast" reads all of them (one machine each) through
:func:`lnlib.cpu_results.records`; these tests check what it relies on. Whether a record meets the
speed goal is that machine's property, checked where it is claimed, in the chapter.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from lnlib import cpu_results

ROOT = Path(__file__).resolve().parents[1]
#: the Intel Xeon record as delivered; shipped unchanged
SHARED_INTEL = ROOT.parent / "shared" / "results" / "cpu-intel-xeon-2026-12-07.json"
ABLATION_FIELDS = {"variant", "pass", "rows", "cols", "seconds", "median_seconds", "block_bytes", "threads",
                   "bufsize"}


@pytest.fixture(scope="module")
def records():
    return cpu_results.records()


def test_every_record_is_read_in_date_order(records):
    files = sorted(cpu_results.RESULTS.glob("cpu-*.json"))
    assert len(records) == len(files) >= 2
    dates = [d["provenance"]["date"] for d in records]
    assert dates == sorted(dates)
    latest = json.loads(cpu_results.latest().read_text())
    assert latest["provenance"]["date"] == dates[-1]
    assert cpu_results.load()["provenance"] == records[-1]["provenance"]


def test_every_record_has_provenance_and_well_formed_measurements(records):
    for d in records:
        p = d["provenance"]
        assert cpu_results.REQUIRED <= set(p)
        assert len(p["git_commit"]) == 40 and p["date"].startswith("20") and p["cores"] >= 1
        assert 1 < d["copy_gbps"] < 10000 and 1 < d["copy_gbps_end"] < 10000
        assert {(r["impl"], r["pass"]) for r in d["rows"]} >= {(i, p_) for i in ("lnlib", "torch")
                                                               for p_ in ("forward", "backward")}
        assert all(r["seconds"] > 0 for r in d["rows"])
        goal = cpu_results.goal_ratios(d)
        assert {D for _, D, _ in goal} <= set(cpu_results.sweep(d))
        for a in d["ablations"]:
            assert ABLATION_FIELDS <= set(a) and a["seconds"] > 0, a
        # every ablation shape has the shipped settings to compare with, for both passes
        shapes = {(a["rows"], a["cols"]) for a in d["ablations"]}
        for M, D in shapes:
            for pas in ("forward", "backward"):
                assert cpu_results.ablation(d, "shipped", pas, D) > 0, (M, D, pas)


def test_machines_are_named_once_each(records):
    labels = cpu_results.labels(records)
    assert len(set(labels)) == len(labels)
    assert {"AMD EPYC", "Intel Xeon"} <= {cpu_results.machine(d) for d in records}
    same = [records[0], json.loads(json.dumps(records[0]))]
    same[1]["provenance"]["date"] = "2027-01-01T00:00:00+00:00"
    assert cpu_results.labels(same) == ["AMD EPYC (2026-11-24)", "AMD EPYC (2027-01-01)"]


def test_caches_and_vector_features_where_recorded(records):
    for d in records:  # older records lack both: "not recorded"
        c, v = cpu_results.caches(d), cpu_results.vector_features(d)
        if c is None:
            assert cpu_results.sizes_line(d) == "not recorded"
        else:
            assert set(c) == {"L1d", "L2", "L3"}
            assert all(x is None or (x["bytes"] > 0 and x["instances"] >= 1) for x in c.values())
        if v is None:
            assert cpu_results.vector_line(d) == "not recorded"
        else:
            assert all(isinstance(x, bool) for x in v.values())
    fake = {"provenance": {"caches": {"L1d": {"bytes": 48 * 1024, "instances": 2}, "L2": None,
                                      "L3": {"bytes": 32 * 2**20, "instances": 1}},
                           "vector_features": {"AVX2": True, "AVX512F": False}}}
    assert cpu_results.sizes_line(fake) == "L1d 48 KiB x 2, L3 32 MiB x 1"
    assert cpu_results.vector_line(fake) == "AVX2"


@pytest.mark.skipif(not SHARED_INTEL.exists(), reason="the shared folder is not beside this checkout")
def test_the_intel_record_is_shipped_unchanged():
    shipped = cpu_results.RESULTS / SHARED_INTEL.name
    assert shipped.read_bytes() == SHARED_INTEL.read_bytes()


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("cpu_benchmark", ROOT / "benchmarks" / "cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_records_caches_and_vector_features(tmp_path):
    cpu = _benchmark_module()
    # two cores, each with its own L1d and L2, sharing one L3; an instruction cache, not recorded
    for n in range(2):
        for i, (level, kind, size, shared) in enumerate([(1, "Data", "48K", str(n)), (1, "Instruction", "32K", str(n)),
                                                         (2, "Unified", "2048K", str(n)),
                                                         (3, "Unified", "32768K", "0-1")]):
            index = tmp_path / f"cpu{n}" / "cache" / f"index{i}"
            index.mkdir(parents=True)
            for field, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
                (index / field).write_text(f"{value}\n")
    assert cpu.caches(tmp_path) == {"L1d": {"bytes": 48 * 1024, "instances": 2},
                                    "L2": {"bytes": 2 * 2**20, "instances": 2},
                                    "L3": {"bytes": 32 * 2**20, "instances": 1}}
    assert cpu.caches(tmp_path / "absent") == {"L1d": None, "L2": None, "L3": None}
    features = cpu.vector_features()
    assert features is None or (features and all(isinstance(v, bool) for v in features.values()))
    p = cpu.provenance("0" * 40)
    assert {"caches", "vector_features", "torch_cpu_capability"} <= set(p) and cpu_results.REQUIRED <= set(p)
