"""Every CUDA kernel compiles with NVRTC for sm_75 and sm_90: checked on the CPU, no GPU needed."""

import pytest

from lnlib.cuda import kernels as K

nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="CuPy (for NVRTC) is not installed")


def _nvrtc_works():
    try:
        nvrtc.getVersion()
        return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _nvrtc_works(), reason="libnvrtc not found (pip install nvidia-cuda-nvrtc)")


@pytest.mark.parametrize("arch,cc", [("sm_75", 75), ("sm_90", 90)])
def test_every_instance_compiles(arch, cc):
    names = K.all_instances(cc)
    assert len(names) > 50
    if cc < 90:
        assert not any("cluster" in n for n in names)
    else:
        assert any("cluster" in n for n in names)
    cubin = K.compile_cubin(names, arch)
    assert cubin[:4] == b"\x7fELF"


def test_every_instance_compiles_for_volta_with_nvrtc12():
    # compute capability 7.0 (V100): NVRTC 13 cannot target it, so this uses NVRTC 12, as CuPy for
    # CUDA 12 would on such a GPU; the chooser gives it the layouts it gives sm_75 (no clusters)
    from tests._nvrtc_ctypes import Nvrtc, find_nvrtc12

    path = find_nvrtc12()
    if path is None:
        pytest.skip("NVRTC 12 not installed (pip install nvidia-cuda-nvrtc-cu12)")
    nv = Nvrtc(path)
    assert nv.version()[0] == 12
    names = K.all_instances(70)
    assert names == K.all_instances(75)
    cubin = nv.compile_cubin(K.source(), names, ["--gpu-architecture=sm_70", *K.OPTIONS])
    assert cubin[:4] == b"\x7fELF"
    with pytest.raises(RuntimeError, match="nvrtcCompileProgram"):
        nv.compile_cubin(K.source(), ["ln_fwd<double, 1, 1, 32, 1, false>"], ["--gpu-architecture=sm_70"])


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_versions_compile(arch):
    names = ["v0_mean<true>", "v0_mean<false>", "v0_rstd<true>", "v0_rstd<false>", "v0_normalize",
             "v0_bwd_rowsums", "v0_bwd_dx"]
    assert K.compile_cubin(names, arch, "versions")[:4] == b"\x7fELF"


def test_compile_error_is_reported():
    with pytest.raises(RuntimeError, match="NVRTC failed"):
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
