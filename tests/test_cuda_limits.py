"""Every layout the chooser picks for each architecture's limits compiles for that architecture and
fits its registers and shared memory: checked on the CPU with NVRTC and ptxas' report, no GPU.

Readers run lnlib.cuda on Colab's T4 (sm_75), A10/L4 (sm_86/sm_89), A100 (sm_80), V100 (sm_70) and
H100 (sm_90); the chooser gets each device's limits at run time, and these are the published ones.
"""

import functools

import pytest

from lnlib.cuda import kernels as K
from lnlib.cuda import limits as L
from lnlib.cuda import nvrtc

pytestmark = pytest.mark.skipif(nvrtc.find_library(13) is None, reason="libnvrtc.so.13 not found")

ARCHS = {"sm_70": 70, "sm_75": 75, "sm_80": 80, "sm_86": 86, "sm_89": 89, "sm_90": 90}
DS = K.INSTANCE_DS  # every D up to 4096, then a dense sample to 262144: the instance list's own


@functools.lru_cache(maxsize=None)
def compiled(arch: str):
    if arch in ("sm_70", "sm_75", "sm_90"):  # compiled once per run, shared with test_cuda_compile
        from tests.test_cuda_compile import compiled as shared

        return shared(arch)
    return K.compile_report(K.all_instances(ARCHS[arch]), arch)


def _chosen(cc: int):
    """{kernel name: (threads, dynamic shared memory bytes)} over every D, dtype, direction, alignment."""
    out = {}
    for dtype in K.CTYPE:
        for D in DS:
            for backward in (False, True):
                for vector in (True, False):
                    cfg = K.choose(D, dtype, backward, cc, vector=vector)
                    smem = K.acc_smem_bytes(cfg, D) if backward else 0
                    name = K.kernel_name(dtype, cfg, backward)
                    t, s = out.get(name, (0, 0))
                    out[name] = (max(t, cfg.threads), max(s, smem))
    return out


@pytest.mark.parametrize("arch", list(ARCHS))
def test_chosen_layouts_compile_and_fit_the_architecture(arch):
    if arch == "sm_70" and nvrtc.find_library(12) is None:
        pytest.skip("NVRTC 12 not installed (pip install nvidia-cuda-nvrtc-cu12)")
    cc = ARCHS[arch]
    limits = L.limits_for(cc)
    cubin, usage = compiled(arch)
    assert cubin[:4] == b"\x7fELF"
    chosen = _chosen(cc)
    missing = set(chosen) - set(usage)
    assert not missing, f"chosen but not in all_instances({cc}): {sorted(missing)[:5]}"
    for name, (threads, dyn_smem) in chosen.items():
        u = usage[name]
        assert u["registers"] * threads <= limits.regs_per_sm, (name, u["registers"], threads)
        assert u["smem"] <= L.STATIC_SMEM_RESERVE, (name, u["smem"])  # the reserve really covers it
        assert u["smem"] + dyn_smem <= limits.smem_per_block_optin, (name, u["smem"], dyn_smem)
