"""Every CUDA kernel compiles with NVRTC for sm_70, sm_75 and sm_90, and the compiled code has the
properties the book claims (no spills, 16-byte loads, fewer barriers): checked on the CPU, no GPU."""

import functools

import pytest

from lnlib.cuda import kernels as K
from lnlib.cuda import nvrtc

pytestmark = pytest.mark.skipif(nvrtc.find_library(13) is None, reason="libnvrtc.so.13 not found (pip install nvidia-cuda-nvrtc)")
needs_nvdisasm = pytest.mark.skipif(nvrtc.find_tool("nvdisasm") is None, reason="pip install nvidia-cuda-nvdisasm")

ARCHS = {"sm_70": 70, "sm_75": 75, "sm_90": 90}


@functools.lru_cache(maxsize=None)
def compiled(arch: str):
    """(cubin, {name expression: ptxas' usage}) of every instance for arch: compiled once per run."""
    return K.compile_report(K.all_instances(ARCHS[arch]), arch)


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_every_instance_compiles(arch):
    names = K.all_instances(ARCHS[arch])
    assert len(names) > 50
    assert any("cluster" in n for n in names) == (arch == "sm_90")
    cubin, usage = compiled(arch)
    assert cubin[:4] == b"\x7fELF" and set(usage) == set(names)


def test_every_instance_compiles_for_volta_with_nvrtc12():
    # compute capability 7.0 (V100): NVRTC 13 cannot target it, so this uses NVRTC 12, as CuPy for
    # CUDA 12 would on such a GPU; the chooser gives it the layouts it gives sm_75 (no clusters)
    if nvrtc.find_library(12) is None:
        pytest.skip("NVRTC 12 not installed (pip install nvidia-cuda-nvrtc-cu12)")
    assert nvrtc.nvrtc(12).version()[0] == 12
    assert K.all_instances(70) == K.all_instances(75)
    cubin, usage = compiled("sm_70")
    assert cubin[:4] == b"\x7fELF" and set(usage) == set(K.all_instances(70))
    with pytest.raises(RuntimeError, match="nvrtcCompileProgram"):
        K.compile_cubin(["ln_fwd<double, 1, 1, 32, 1, false>"], "sm_70")


@pytest.mark.parametrize("arch", ["sm_70", "sm_75", "sm_90"])
def test_chosen_kernels_keep_their_values_in_registers(arch):
    # A spill puts what the kernel holds in registers (the row) into local memory, and every row then
    # pays for it. Allowed: up to 16 bytes, the few values ptxas parks in local memory because the
    # IEEE division and square root call a slow-path subroutine (seen in the SASS: stored once in the
    # prologue, reloaded at most once a row), never the row itself.
    if arch == "sm_70" and nvrtc.find_library(12) is None:
        pytest.skip("NVRTC 12 not installed")
    _, usage = compiled(arch)
    chosen = K.all_instances(ARCHS[arch], with_variants=False)
    spilled = {n: usage[n] for n in chosen if usage[n]["spill_stores"] > 16}
    assert not spilled
    assert all(0 < usage[n]["registers"] <= 255 for n in chosen)


@needs_nvdisasm
def test_vector_kernels_use_16_byte_loads_and_stores():
    cubin, usage = compiled("sm_90")
    code = nvrtc.sass(cubin)
    for dtype in K.CTYPE:
        for D in (1024, 4096):
            for backward in (False, True):
                for vector in (True, False):
                    cfg = K.choose(D, dtype, backward, 90, vector=vector)
                    name = K.kernel_name(dtype, cfg, backward)
                    ops = [nvrtc.opcode(i) for i in code[usage[name]["mangled"]]]
                    wide = sum(op.startswith(("LDG.E.128", "STG.E.128")) for op in ops)
                    assert (wide > 0) == vector, (name, wide)


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_versions_compile(arch):
    names = ["v0_mean<true>", "v0_mean<false>", "v0_rstd<true>", "v0_rstd<false>", "v0_normalize",
             "v0_bwd_rowsums", "v0_bwd_dx"]
    assert K.compile_cubin(names, arch, "versions")[:4] == b"\x7fELF"


def test_compile_error_is_reported():
    with pytest.raises(RuntimeError, match="NVRTC failed.*\n.*from_float"):
        K.compile_cubin(["ln_fwd<double, 1, 1, 32, 1, false>"], "sm_90")


@pytest.mark.parametrize("D", [1, 2, 3, 7, 64, 100, 256, 768, 1000, 1024, 4096, 8192, 16384, 65536, 262144, 100003])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("backward", [False, True])
def test_config_covers_the_row(D, dtype, backward):
    for cc in (75, 90):
        cfg = K.choose(D, dtype, backward, cc)
        if cfg.kind == "looped":
            continue
        assert cfg.TPR * cfg.N * cfg.VW * cfg.C >= D  # every element has a thread
        assert D % (cfg.C * cfg.VW) == 0 or cfg.VW == 1 and cfg.C == 1
        assert cfg.threads <= 1024
        assert cfg.N * cfg.VW * K.ITEMSIZE[dtype] <= K.MAX_BYTES_PER_THREAD
        if cc < 90:
            assert cfg.C == 1
        if backward:
            assert cfg.RPB * 2 * (D // cfg.C) * 4 <= K.SMEM_ACC_LIMIT


def _barriers(ptx: str) -> tuple[int, int]:
    """(block barriers, cluster barriers) in one kernel's PTX."""
    return ptx.count("bar.sync"), ptx.count("barrier.cluster.wait")


def test_two_reduction_slots_remove_barriers():
    # what the bufs/merge variants claim, checked in the generated code: with two alternating slots a
    # reduction needs one block barrier, not two; a cluster kernel keeps one cluster barrier per
    # exchange plus one before its blocks exit; merge exchanges once per row instead of twice
    names = {
        "rows": ("ln_fwd<float, 4, 2, 128, 1, false>", "ln_fwd<float, 4, 2, 128, 1, false, 2>"),
        "cluster": ("ln_fwd_cluster<float, 4, 4, 512, 8>", "ln_fwd_cluster<float, 4, 4, 512, 8, 2>",
                    "ln_fwd_cluster<float, 4, 4, 512, 8, 2, true>"),
        "bwd": ("ln_bwd_cluster<float, 4, 4, 512, 8, false>", "ln_bwd_cluster<float, 4, 4, 512, 8, false, 2>"),
    }
    ptx = K.compile_ptx([n for group in names.values() for n in group])
    counts = {n: _barriers(ptx[n]) for n in ptx}
    one, two = names["rows"]
    assert counts[one] == (4, 0) and counts[two] == (2, 0)  # two reductions a row
    base, bufs2, merged = names["cluster"]
    assert counts[base] == (4, 4) and counts[bufs2] == (2, 3) and counts[merged] == (2, 2)
    base, bufs2 = names["bwd"]  # one reduction a row, plus the accumulators' two block barriers
    assert counts[base] == (4, 2) and counts[bufs2] == (3, 2)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("backward", [False, True])
def test_variants_cover_the_row(dtype, backward):
    for D in K.BENCH_D:
        configs = K.variants(D, dtype, backward, 90)
        assert configs[0] == K.choose(D, dtype, backward, 90)  # the chosen layout is measured with them
        for cfg in configs:
            assert cfg.TPR * cfg.N * cfg.VW * cfg.C >= D and D % (cfg.C * cfg.VW) == 0
            assert cfg.threads <= 1024 and cfg.C <= 8
            assert cfg.N * cfg.VW * K.ITEMSIZE[dtype] <= K.MAX_BYTES_PER_THREAD
            assert not (cfg.merge and (backward or cfg.C == 1))
            if backward:
                assert cfg.RPB * 2 * (D // cfg.C) * 4 <= K.SMEM_ACC_LIMIT
        assert all(c.C == 1 for c in K.variants(D, dtype, backward, 75))  # no clusters before sm_90
