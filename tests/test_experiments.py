"""The experiments (benchmarks/experiments/): their kernels match their descriptions, compile, and with
every variant parameter at its default are the production kernels, instruction for instruction (so a
measured difference is the variant's); their variants cover the row; the scripts that measure them
compile. On a GPU, every variant is checked against long double before it may be measured.
"""

import ast
import importlib
import importlib.util
import py_compile
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.experiments import variants as X
from lnlib.cuda import api
from lnlib.cuda import families as F
from lnlib.cuda import kernels as K
from lnlib.cuda import limits as L
from lnlib.cuda import nvrtc

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "benchmarks" / "experiments"
needs_nvrtc = pytest.mark.skipif(nvrtc.find_library(13) is None, reason="libnvrtc.so.13 not found")
needs_gpu = pytest.mark.skipif(not api.is_available(), reason="no CUDA GPU (CuPy sees no device)")


def test_the_variant_kernels_match_their_descriptions():
    assert F.mismatches(K.source(X.SOURCE), X.FAMILIES.values()) == []
    # each extends its production family: the same parameters first, the same arguments (so
    # lnlib.cuda's launcher passes them), and only variant parameters after, each with the default
    # that production has
    for fam, prod in X.PRODUCTION.items():
        assert fam.params[:len(prod.params)] == prod.params and fam.args == prod.args
        extra = fam.params[len(prod.params):]
        assert extra and all(p.name in X.FIELD and p.default is not None for p in extra)
        assert all(getattr(X.Variant, X.FIELD[p.name]) == p.default for p in extra)


def test_a_variant_is_named_from_its_layout_and_choices():
    base = K.choose(1024, "float32", False)
    assert X.Variant(base).production and not X.Variant(base, bufs=2).production
    prod = K.forward_instance("float32", base)
    default = X.instance("float32", X.Variant(base), False)
    assert default.family is X.LN_FWD_VARIANT
    assert F.parse_name(default.name, X.FAMILIES)[1] == {**F.parse_name(prod.name)[1], "T": "float", "ONEPASS": False,
                                                        "BUFS": 1, "KEEP": False}
    two = F.parse_name(X.instance("float32", X.Variant(base, bufs=2, keep=True), False).name, X.FAMILIES)[1]
    assert (two["BUFS"], two["KEEP"], two["ONEPASS"]) == (2, True, False)
    assert X.runs("float32", X.Variant(base), False) == prod  # the default runs the production kernel
    with pytest.raises(ValueError, match="MERGE"):
        X.instance("float32", X.Variant(base, merge=True), False)
    with pytest.raises(ValueError, match="ACC_REGS"):
        X.instance("float32", X.Variant(base, acc_regs=True), False)
    cluster = K.choose(65536, "float32", False)
    with pytest.raises(ValueError, match="ONEPASS"):
        X.instance("float32", X.Variant(cluster, onepass=True), False)
    with pytest.raises(ValueError, match="looped"):
        X.instance("float32", X.Variant(K.RowConfig("looped")), False)
    assert X.onepass(65536, "float32") is None and X.onepass(4096, "float32").onepass


def _normalised(ptx: str) -> str:
    # mangled names (which carry the kernel's name) by order of appearance; block labels without the
    # function's index in the module; the comment that names the next entry of the module
    seen = {}
    ptx = re.sub(r"\$L__BB\d+_", "$L__BB_", ptx)
    ptx = re.sub(r"^\s*// \.(?:weak|globl)\s+\S+\s*$", "", ptx, flags=re.M).rstrip()
    return re.sub(r"_Z\w+", lambda m: seen.setdefault(m.group(0), f"_Z{len(seen)}"), ptx)


@needs_nvrtc
@pytest.mark.parametrize("cc", [75, 90])
def test_the_defaults_are_the_production_kernels(cc):
    pairs = {}
    for dtype in F.CTYPE:
        for D in K.BENCH_D:
            for backward in (False, True):
                base = X.variants(D, dtype, backward, cc)[0]
                if base.layout.kind != "looped":
                    pairs[X.instance(dtype, base, backward).name] = K.kernel_name(dtype, base.layout, backward)
    assert len(pairs) >= 20
    arch = f"compute_{cc}"
    mine = K.compile_ptx(list(pairs), arch, X.SOURCE)
    prod = K.compile_ptx(sorted(set(pairs.values())), arch)
    differ = [n for n, p in pairs.items() if _normalised(mine[n]) != _normalised(prod[p])]
    assert not differ


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_every_variant_compiles(arch):
    names = X.instances(int(arch[3:]))
    assert any("cluster" in n for n in names) == (arch == "sm_90")
    cubin, usage = K.compile_report(names, arch, X.SOURCE)
    assert cubin[:4] == b"\x7fELF" and set(usage) == set(names)


def _barriers(ptx: str) -> tuple[int, int]:
    """(block barriers, cluster barriers) in one kernel's PTX."""
    return ptx.count("bar.sync"), ptx.count("barrier.cluster.wait")


@needs_nvrtc
def test_two_reduction_slots_remove_barriers():
    # what the bufs/merge variants claim, checked in the generated code: with two alternating slots a
    # reduction needs one block barrier, not two; a cluster kernel keeps one cluster barrier per
    # exchange plus one before its blocks exit; merge exchanges once per row instead of twice
    rows, cluster = K.choose(1024, "float32", False), K.choose(65536, "float32", False)
    bwd = K.choose(65536, "float32", True)
    assert (rows.kind, cluster.kind, bwd.kind) == ("rows", "cluster", "cluster")
    V = X.Variant
    configs = {"rows": (V(rows), V(rows, bufs=2)), "cluster": (V(cluster), V(cluster, bufs=2),
                                                             V(cluster, bufs=2, merge=True))}
    names = {k: [X.instance("float32", v, False).name for v in vs] for k, vs in configs.items()}
    names["bwd"] = [X.instance("float32", v, True).name for v in (V(bwd), V(bwd, bufs=2))]
    ptx = K.compile_ptx([n for group in names.values() for n in group], source_name=X.SOURCE)
    counts = {k: [_barriers(ptx[n]) for n in group] for k, group in names.items()}
    assert counts["rows"] == [(4, 0), (2, 0)]  # two reductions a row
    assert counts["cluster"] == [(4, 4), (2, 3), (2, 2)]
    assert counts["bwd"] == [(4, 2), (3, 2)]  # one reduction a row, plus the accumulators' two barriers
    # and the chosen kernels of layernorm.cu are the one-slot ones
    prod = K.compile_ptx([K.forward_name("float32", rows), K.forward_name("float32", cluster),
                          K.backward_name("float32", bwd)])
    assert sorted(_barriers(p) for p in prod.values()) == sorted([(4, 0), (4, 4), (4, 2)])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("backward", [False, True])
def test_variants_cover_the_row(dtype, backward):
    for D in K.BENCH_D:
        configs = X.variants(D, dtype, backward, 90)
        assert configs[0] == X.Variant(K.choose(D, dtype, backward, 90))  # measured beside the chosen layout
        for v in configs:
            cfg = v.layout
            assert cfg.TPR * cfg.N * cfg.VW * cfg.C >= D and D % (cfg.C * cfg.VW) == 0
            assert cfg.threads <= L.MAX_THREADS and cfg.C <= 8
            assert cfg.N * cfg.VW * L.ITEMSIZE[dtype] <= L.MAX_BYTES_PER_THREAD
            assert not (v.merge and (backward or cfg.C == 1)) and not (backward and v.blocks_per_sm)
            if backward:
                assert K.acc_smem_bytes(cfg, D) <= L.SMEM_ACC_LIMIT
        assert all(v.layout.C == 1 for v in X.variants(D, dtype, backward, 75))  # no clusters before sm_90


def test_the_scripts_compile():
    # the GPU scripts cannot run here; they must at least be valid Python (and shell), and what they
    # import from lnlib and the experiments, and use of kernels (K.) and variants (X.), must exist
    scripts = sorted((ROOT / "benchmarks").glob("*.py")) + sorted(EXPERIMENTS.glob("*.py"))
    assert EXPERIMENTS / "tune_variants.py" in scripts
    for path in scripts:
        py_compile.compile(str(path), doraise=True)
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    ("lnlib", "benchmarks.experiments")):
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(mod, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                        path.name, node.module, alias.name)
        for prefix, mod in (("X", X), ("K", K)):
            for attr in re.findall(rf"\b{prefix}\.(\w+)", text):
                assert hasattr(mod, attr), (path.name, prefix, attr)
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_checks.sh")], check=True)
    assert "benchmarks/experiments/tune_variants.py" in (ROOT / "benchmarks" / "gpu_checks.sh").read_text()


def test_the_readme_says_what_each_variant_is_and_cites_what_exists():
    text = (EXPERIMENTS / "README.md").read_text()
    for param in X.FIELD:  # every variant parameter is explained
        assert f"`{param}`" in text, param
    assert "blocks_per_sm" in text
    measured = text[text.index("## What has been measured"):text.index("## Running")]
    cited = re.findall(r"lnlib/results/[\w./-]+", measured)  # the recorded results it cites exist
    assert len(cited) >= 2 and all((ROOT / c).exists() for c in cited), cited
    assert "measured faster" in text


# ---- on a GPU ------------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("D", K.BENCH_D)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_variants_against_long_double(dtype, D, backward):
    # the variants tune_variants.py measures, each checked before any of them may be chosen
    import cupy as cp

    from lnlib.oracle import layer_norm_longdouble, max_rel_error

    rng = np.random.default_rng(D)
    M = max(80, (20 << 20) // (D * 4))  # more row groups than an H100 holds blocks (or clusters) at once
    offset = 1e3 if dtype == "float32" else 4.0
    x = (offset + rng.standard_normal((M, D))).astype(dtype)
    gamma = (1 + 0.5 * rng.standard_normal(D)).astype(dtype)
    beta = rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal((M, D)).astype(dtype)
    x, gamma, beta, dy = (cp.asarray(a) for a in (x, gamma, beta, dy))
    f = lambda a: cp.asnumpy(a).astype(np.float64)  # noqa: E731
    ry, rdx, rdg, rdb = layer_norm_longdouble(f(x), f(gamma), f(beta), 1e-5, f(dy))
    ty, tg = L.TOL[dtype]
    configs = X.variants(D, dtype, backward, api._cc(x.device.id))
    assert len(configs) >= 2
    _, cache = api.layer_norm_forward(x, gamma, beta)
    for v in configs:
        if not backward:
            y, _ = X.forward(x, gamma, beta, 1e-5, v)
            assert max_rel_error(cp.asnumpy(y), ry) < ty, v
            continue
        runs = [X.backward(dy, cache, v) for _ in range(2)]
        for a, r in zip(runs[0], (rdx, rdg, rdb)):
            assert max_rel_error(cp.asnumpy(a), r) < tg, v
        for a, b in zip(*runs):
            assert cp.asnumpy(a).tobytes() == cp.asnumpy(b).tobytes(), v


@needs_gpu
def test_the_one_pass_statistics_lose_digits_where_the_shift_keeps_them():
    # the recorded run's "template: one-pass" row: right for a row near zero, wrong far from it
    import cupy as cp

    from lnlib.oracle import layer_norm_longdouble, max_rel_error

    rng = np.random.default_rng(12)
    v = X.onepass(4096, "float32", api._cc(cp.cuda.Device().id))
    for offset, good in ((0.5, True), (1e4, False)):
        x = (offset + rng.standard_normal((64, 4096))).astype(np.float32)
        y, _ = X.forward(cp.asarray(x), None, None, 1e-5, v)
        err = max_rel_error(cp.asnumpy(y), layer_norm_longdouble(x))
        assert (err < L.TOL["float32"][0]) == good, (offset, err)
