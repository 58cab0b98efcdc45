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
