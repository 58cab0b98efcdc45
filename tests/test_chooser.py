"""The layout chooser, without a GPU: its rules over every row length, and its picks pinned.

``lnlib.cuda.kernels.choose`` is pure Python; a change to it that alters what runs at the benchmark's
shapes must show up here (update PINNED on purpose, with the measurement that justified it).
"""

import pytest

from lnlib.cuda import kernels as K

ARCHS = (70, 75, 80, 86, 89, 90)
DTYPES = ("float32", "float16", "bfloat16")
# every D up to 4096, then a dense sample to 262144 (odd, powers of two and their neighbours)
DS = sorted(set(range(1, 4097)) | set(range(4097, 262145, 97)) | {2**k + d for k in range(12, 19) for d in (-8, -1, 0, 1, 8)})


@pytest.mark.parametrize("cc", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_layout_rules_hold_for_every_row_length(cc, dtype, backward):
    s = K.ITEMSIZE[dtype]
    for D in DS:
        for vector in (True, False):
            cfg = K.choose(D, dtype, backward, cc, vector=vector)
            where = f"D={D} {cfg}"
            assert cfg.threads <= 1024, where
            if cfg.kind == "looped":
                continue
            if cfg.VW > 1:
                assert vector and D % cfg.VW == 0 and cfg.VW * s == 16, where
            assert cfg.VW * cfg.N * cfg.TPR * cfg.C >= D, where  # the threads cover the row
            assert cfg.N * cfg.VW * s <= K.MAX_BYTES_PER_THREAD, where  # the register budget
            if cfg.kind == "cluster":
                assert cc >= 90 and cfg.C in (2, 4, 8) and cfg.TPR == 512 and cfg.RPB == 1, where
                assert D % (cfg.C * cfg.VW) == 0, where  # every block of the cluster gets whole vectors
            else:
                assert cfg.C == 1, where
            if backward:  # the dgamma/dbeta accumulators of a block fit in shared memory
                assert cfg.RPB * 2 * (D // cfg.C) * 4 <= K.SMEM_ACC_LIMIT, where


# (dtype, backward, D): (the pick for sm_70..sm_89, the pick for sm_90), as measured on an H100
PINNED = {
    ("bfloat16", False, 256): ("ln_fwd<bf16_t, 8, 2, 16, 8, false>", "ln_fwd<bf16_t, 8, 2, 16, 8, false>"),
    ("bfloat16", False, 1024): ("ln_fwd<bf16_t, 8, 2, 64, 2, false>", "ln_fwd<bf16_t, 8, 2, 64, 2, false>"),
    ("bfloat16", False, 4096): ("ln_fwd<bf16_t, 8, 2, 256, 1, false>", "ln_fwd<bf16_t, 8, 2, 256, 1, false>"),
    ("bfloat16", False, 8192): ("ln_fwd<bf16_t, 8, 2, 512, 1, false>", "ln_fwd<bf16_t, 8, 2, 512, 1, false>"),
    ("bfloat16", False, 16384): ("ln_fwd<bf16_t, 8, 4, 512, 1, false>", "ln_fwd<bf16_t, 8, 4, 512, 1, false>"),
    ("bfloat16", False, 65536): ("ln_fwd_looped<bf16_t, 1024>", "ln_fwd_cluster<bf16_t, 8, 4, 512, 4>"),
    ("bfloat16", True, 256): ("ln_bwd<bf16_t, 8, 2, 16, 8, false>", "ln_bwd<bf16_t, 8, 2, 16, 8, false>"),
    ("bfloat16", True, 1024): ("ln_bwd<bf16_t, 8, 2, 64, 2, false>", "ln_bwd<bf16_t, 8, 2, 64, 2, false>"),
    ("bfloat16", True, 4096): ("ln_bwd<bf16_t, 8, 2, 256, 1, false>", "ln_bwd<bf16_t, 8, 2, 256, 1, false>"),
    ("bfloat16", True, 8192): ("ln_bwd<bf16_t, 8, 2, 512, 1, false>", "ln_bwd<bf16_t, 8, 2, 512, 1, false>"),
    ("bfloat16", True, 16384): ("ln_bwd<bf16_t, 8, 2, 1024, 1, false>", "ln_bwd<bf16_t, 8, 2, 1024, 1, false>"),
    ("bfloat16", True, 65536): ("ln_bwd_looped<bf16_t, 1024>", "ln_bwd_cluster<bf16_t, 8, 4, 512, 4, false>"),
    ("float16", False, 256): ("ln_fwd<half_t, 8, 2, 16, 8, false>", "ln_fwd<half_t, 8, 2, 16, 8, false>"),
    ("float16", False, 1024): ("ln_fwd<half_t, 8, 2, 64, 2, false>", "ln_fwd<half_t, 8, 2, 64, 2, false>"),
    ("float16", False, 4096): ("ln_fwd<half_t, 8, 2, 256, 1, false>", "ln_fwd<half_t, 8, 2, 256, 1, false>"),
    ("float16", False, 8192): ("ln_fwd<half_t, 8, 2, 512, 1, false>", "ln_fwd<half_t, 8, 2, 512, 1, false>"),
    ("float16", False, 16384): ("ln_fwd<half_t, 8, 4, 512, 1, false>", "ln_fwd<half_t, 8, 4, 512, 1, false>"),
    ("float16", False, 65536): ("ln_fwd_looped<half_t, 1024>", "ln_fwd_cluster<half_t, 8, 4, 512, 4>"),
    ("float16", True, 256): ("ln_bwd<half_t, 8, 2, 16, 8, false>", "ln_bwd<half_t, 8, 2, 16, 8, false>"),
    ("float16", True, 1024): ("ln_bwd<half_t, 8, 2, 64, 2, false>", "ln_bwd<half_t, 8, 2, 64, 2, false>"),
    ("float16", True, 4096): ("ln_bwd<half_t, 8, 2, 256, 1, false>", "ln_bwd<half_t, 8, 2, 256, 1, false>"),
    ("float16", True, 8192): ("ln_bwd<half_t, 8, 2, 512, 1, false>", "ln_bwd<half_t, 8, 2, 512, 1, false>"),
    ("float16", True, 16384): ("ln_bwd<half_t, 8, 2, 1024, 1, false>", "ln_bwd<half_t, 8, 2, 1024, 1, false>"),
    ("float16", True, 65536): ("ln_bwd_looped<half_t, 1024>", "ln_bwd_cluster<half_t, 8, 4, 512, 4, false>"),
    ("float32", False, 256): ("ln_fwd<float, 4, 2, 32, 4, false>", "ln_fwd<float, 4, 2, 32, 4, false>"),
    ("float32", False, 1024): ("ln_fwd<float, 4, 2, 128, 1, false>", "ln_fwd<float, 4, 2, 128, 1, false>"),
    ("float32", False, 4096): ("ln_fwd<float, 4, 2, 512, 1, false>", "ln_fwd<float, 4, 2, 512, 1, false>"),
    ("float32", False, 8192): ("ln_fwd<float, 4, 2, 1024, 1, false>", "ln_fwd<float, 4, 2, 1024, 1, false>"),
    ("float32", False, 16384): ("ln_fwd<float, 4, 4, 1024, 1, false>", "ln_fwd<float, 4, 4, 1024, 1, false>"),
    ("float32", False, 65536): ("ln_fwd_looped<float, 1024>", "ln_fwd_cluster<float, 4, 4, 512, 8>"),
    ("float32", True, 256): ("ln_bwd<float, 4, 2, 32, 4, false>", "ln_bwd<float, 4, 2, 32, 4, false>"),
    ("float32", True, 1024): ("ln_bwd<float, 4, 2, 128, 1, false>", "ln_bwd<float, 4, 2, 128, 1, false>"),
    ("float32", True, 4096): ("ln_bwd<float, 4, 2, 512, 1, false>", "ln_bwd<float, 4, 2, 512, 1, false>"),
    ("float32", True, 8192): ("ln_bwd<float, 4, 2, 1024, 1, false>", "ln_bwd<float, 4, 2, 1024, 1, false>"),
    ("float32", True, 16384): ("ln_bwd<float, 4, 4, 1024, 1, false>", "ln_bwd<float, 4, 4, 1024, 1, false>"),
    ("float32", True, 65536): ("ln_bwd_looped<float, 1024>", "ln_bwd_cluster<float, 4, 4, 512, 8, false>"),
}


@pytest.mark.parametrize("cc", ARCHS)
def test_picks_at_the_benchmark_shapes_are_pinned(cc):
    for (dtype, backward, D), (before_90, sm_90) in PINNED.items():
        got = K.kernel_name(dtype, K.choose(D, dtype, backward, cc), backward)
        assert got == (sm_90 if cc >= 90 else before_90), (cc, dtype, backward, D)
    assert {D for _, _, D in PINNED} == set(K.BENCH_D)
