"""Every CUDA kernel compiles with NVRTC for sm_70, sm_75 and sm_90, and the compiled code has the
properties the book claims (no spills, 16-byte loads): checked on the CPU, no GPU. The experiments'
kernels (benchmarks/experiments/) are checked by tests/test_experiments.py."""

import functools
import re

import pytest

from lnlib.cuda import families as F
from lnlib.cuda import kernels as K
from lnlib.cuda import limits as L
from lnlib.cuda import nvrtc, versions

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
    # CUDA 12 would on such a GPU; the chooser gives it its own layouts (no clusters, 96 KB per block)
    if nvrtc.find_library(12) is None:
        pytest.skip("NVRTC 12 not installed (pip install nvidia-cuda-nvrtc-cu12)")
    assert nvrtc.nvrtc(12).version()[0] == 12
    assert not any("cluster" in n for n in K.all_instances(70))
    cubin, usage = compiled("sm_70")
    assert cubin[:4] == b"\x7fELF" and set(usage) == set(K.all_instances(70))
    with pytest.raises(RuntimeError, match="nvrtcCompileProgram"):
        K.compile_cubin([F.LN_FWD.name(T="double", VW=1, N=1, TPR=32, RPB=1)], "sm_70")


@pytest.mark.parametrize("arch", ["sm_70", "sm_75", "sm_90"])
def test_chosen_kernels_keep_their_values_in_registers(arch):
    # A spill puts what the kernel holds in registers (the row) into local memory, and every row then
    # pays for it. Allowed: up to L.SPILL_ALLOWANCE bytes, the few values ptxas parks in local memory
    # because the IEEE division and square root call a slow-path subroutine (seen in the SASS: stored
    # once in the prologue, reloaded at most once a row), never the row itself.
    if arch == "sm_70" and nvrtc.find_library(12) is None:
        pytest.skip("NVRTC 12 not installed")
    _, usage = compiled(arch)
    chosen = K.all_instances(ARCHS[arch])
    spilled = {n: usage[n] for n in chosen if usage[n]["spill_stores"] > L.SPILL_ALLOWANCE}
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


@pytest.mark.parametrize("arch", ["sm_70", "sm_75", "sm_90"])
def test_versions_compile_without_spills(arch):
    # every kernel of chapter 10 that the launchers in versions.py can use; the register kernels may
    # run 1024 threads a block, so they must fit in 64 registers a thread, and none may spill
    if arch == "sm_70" and nvrtc.find_library(12) is None:
        pytest.skip("NVRTC 12 not installed")
    names = versions.instances()
    cubin, usage = K.compile_report(names, arch, "versions")
    assert cubin[:4] == b"\x7fELF" and set(usage) == set(names)
    for n in names:
        assert usage[n]["spill_stores"] == 0 and 0 < usage[n]["registers"] <= L.MAX_REGS_1024, (n, usage[n])


@needs_nvdisasm
def test_versions_3_and_4_load_16_bytes():
    # the one thing version 3 adds to version 2, seen in the machine code: 16-byte loads and stores
    names = {k: versions.VERSIONS[k].kernels[0].name(N=2) for k in ("v2", "v3", "v4")}
    cubin, usage = K.compile_report(list(names.values()), "sm_90", "versions")
    code = nvrtc.sass(cubin)
    wide = {k: sum(nvrtc.opcode(i).startswith(("LDG.E.128", "STG.E.128")) for i in code[usage[n]["mangled"]])
            for k, n in names.items()}
    assert wide["v2"] == 0 and wide["v3"] > 0 and wide["v4"] > 0, wide
    assert [versions.VERSIONS[k].vector for k in names] == [False, True, True]


def test_versions_launch_config_covers_the_row():
    for version in versions.FORWARD + versions.BACKWARD:
        for D in [*range(1, 300), 1000, 1024, 1028, 4096, 5000, 8192, 8196, 16380, 16384, 16388, 20000, 65536]:
            try:
                name, threads = versions.launch_config(version, D)
            except ValueError as exc:
                too_long = D > versions.MAX_D.get(version, L.INT_MAX)
                assert too_long or versions.VERSIONS[version].vector and D % 4, (version, D)
                assert str(exc).startswith(version)
                continue
            assert name in versions.instances() and threads % 32 == 0 and 32 <= threads <= 1024
            if versions.VERSIONS[version].block_n:  # a register kernel: N values (or vectors) a thread
                per = 4 if versions.VERSIONS[version].vector else 1
                N = F.parse_name(name)[1]["N"]
                assert N * threads * per >= D and (N == 1 or (N // 2) * threads * per < D), (version, D, name)
    with pytest.raises(ValueError, match="divisible by 4"):
        versions.launch_config("v3", 1001)
    with pytest.raises(ValueError, match="D <= 8192"):
        versions.launch_config("b1", 16384)
    with pytest.raises(ValueError, match="version must be one of"):
        versions.launch_config("v5", 16)


def test_versions_sections_are_marked():
    # the chapter shows versions.cu by these sections (lnlib.source.cuda_section): every one is
    # closed and non-empty, and every kernel the launchers use is inside one
    from lnlib.source import cuda_section

    path = K.SOURCES["versions"]
    text = path.read_text()
    begins = re.findall(r"^// BEGIN (\S+)$", text, flags=re.M)
    ends = re.findall(r"^// END (\S+)$", text, flags=re.M)
    assert begins == ends and len(set(begins)) == len(begins)
    assert set(begins) == {s for v in versions.VERSIONS.values() for s in v.sections}
    shown = "".join(cuda_section(path, name) for name in begins)
    for kernel in {F.parse_name(n)[0].kernel for n in versions.instances()}:
        assert re.search(rf"\b{kernel}\(", shown), kernel
    with pytest.raises(ValueError, match="no section"):
        cuda_section(path, "v9")


def test_compile_error_is_reported():
    with pytest.raises(RuntimeError, match="NVRTC failed.*\n.*from_float"):
        K.compile_cubin([F.LN_FWD.name(T="double", VW=1, N=1, TPR=32, RPB=1)], "sm_90")


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
        assert cfg.threads <= L.MAX_THREADS
        assert cfg.N * cfg.VW * L.ITEMSIZE[dtype] <= L.MAX_BYTES_PER_THREAD
        if cc < 90:
            assert cfg.C == 1
        if backward:
            assert K.acc_smem_bytes(cfg, D) <= L.SMEM_ACC_LIMIT
