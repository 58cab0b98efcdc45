"""The layout chooser, without a GPU: its rules over every row length, and its picks pinned.

``lnlib.cuda.kernels.choose`` is pure Python; a change to it that alters what runs at the benchmark's
shapes must show up here (update PINNED on purpose, with the measurement that justified it).
"""

import pytest

from lnlib.cuda import kernels as K

ARCHS = (70, 75, 80, 86, 89, 90)
DTYPES = ("float32", "float16", "bfloat16")
DS = K.INSTANCE_DS  # every D up to 4096, then a dense sample to 262144 and powers of two to 2**20


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
                assert K.acc_smem_bytes(cfg, D) <= K.limits_for(cc).acc_budget, where


# (cc, dtype, backward): the picks at BENCH_D = (256, 1024, 4096, 8192, 16384, 65536). The sm_90
# picks were measured on an H100; the others follow from each architecture's limits (KNOWN_LIMITS).
PINNED = {
    (70, "float32", False): (
        "ln_fwd<float, 4, 2, 32, 4, false>",
        "ln_fwd<float, 4, 2, 128, 1, false>",
        "ln_fwd<float, 4, 2, 512, 1, false>",
        "ln_fwd<float, 4, 2, 1024, 1, false>",
        "ln_fwd<float, 4, 4, 1024, 1, false>",
        "ln_fwd_looped<float, 1024>",
    ),
    (70, "float32", True): (
        "ln_bwd<float, 4, 2, 32, 4, false>",
        "ln_bwd<float, 4, 2, 128, 1, false>",
        "ln_bwd<float, 4, 2, 512, 1, false>",
        "ln_bwd<float, 4, 2, 1024, 1, false>",
        "ln_bwd_looped<float, 1024>",
        "ln_bwd_looped<float, 1024>",
    ),
    (70, "float16", False): (
        "ln_fwd<half_t, 8, 2, 16, 8, false>",
        "ln_fwd<half_t, 8, 2, 64, 2, false>",
        "ln_fwd<half_t, 8, 2, 256, 1, false>",
        "ln_fwd<half_t, 8, 2, 512, 1, false>",
        "ln_fwd<half_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<half_t, 1024>",
    ),
    (70, "float16", True): (
        "ln_bwd<half_t, 8, 2, 16, 8, false>",
        "ln_bwd<half_t, 8, 2, 64, 2, false>",
        "ln_bwd<half_t, 8, 2, 256, 1, false>",
        "ln_bwd<half_t, 8, 2, 512, 1, false>",
        "ln_bwd_looped<half_t, 1024>",
        "ln_bwd_looped<half_t, 1024>",
    ),
    (70, "bfloat16", False): (
        "ln_fwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_fwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_fwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_fwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_fwd<bf16_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<bf16_t, 1024>",
    ),
    (70, "bfloat16", True): (
        "ln_bwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_bwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_bwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_bwd_looped<bf16_t, 1024>",
        "ln_bwd_looped<bf16_t, 1024>",
    ),
    (75, "float32", False): (
        "ln_fwd<float, 4, 2, 32, 4, false>",
        "ln_fwd<float, 4, 2, 128, 1, false>",
        "ln_fwd<float, 4, 2, 512, 1, false>",
        "ln_fwd<float, 4, 2, 1024, 1, false>",
        "ln_fwd<float, 4, 4, 1024, 1, false>",
        "ln_fwd_looped<float, 1024>",
    ),
    (75, "float32", True): (
        "ln_bwd<float, 4, 2, 32, 4, false>",
        "ln_bwd<float, 4, 2, 128, 1, false>",
        "ln_bwd<float, 4, 2, 512, 1, false>",
        "ln_bwd_looped<float, 1024>",
        "ln_bwd_looped<float, 1024>",
        "ln_bwd_looped<float, 1024>",
    ),
    (75, "float16", False): (
        "ln_fwd<half_t, 8, 2, 16, 8, false>",
        "ln_fwd<half_t, 8, 2, 64, 2, false>",
        "ln_fwd<half_t, 8, 2, 256, 1, false>",
        "ln_fwd<half_t, 8, 2, 512, 1, false>",
        "ln_fwd<half_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<half_t, 1024>",
    ),
    (75, "float16", True): (
        "ln_bwd<half_t, 8, 2, 16, 8, false>",
        "ln_bwd<half_t, 8, 2, 64, 2, false>",
        "ln_bwd<half_t, 8, 2, 256, 1, false>",
        "ln_bwd_looped<half_t, 1024>",
        "ln_bwd_looped<half_t, 1024>",
        "ln_bwd_looped<half_t, 1024>",
    ),
    (75, "bfloat16", False): (
        "ln_fwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_fwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_fwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_fwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_fwd<bf16_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<bf16_t, 1024>",
    ),
    (75, "bfloat16", True): (
        "ln_bwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_bwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_bwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_bwd_looped<bf16_t, 1024>",
        "ln_bwd_looped<bf16_t, 1024>",
        "ln_bwd_looped<bf16_t, 1024>",
    ),
    (80, "float32", False): (
        "ln_fwd<float, 4, 2, 32, 4, false>",
        "ln_fwd<float, 4, 2, 128, 1, false>",
        "ln_fwd<float, 4, 2, 512, 1, false>",
        "ln_fwd<float, 4, 2, 1024, 1, false>",
        "ln_fwd<float, 4, 4, 1024, 1, false>",
        "ln_fwd_looped<float, 1024>",
    ),
    (80, "float32", True): (
        "ln_bwd<float, 4, 2, 32, 4, false>",
        "ln_bwd<float, 4, 2, 128, 1, false>",
        "ln_bwd<float, 4, 2, 512, 1, false>",
        "ln_bwd<float, 4, 2, 1024, 1, false>",
        "ln_bwd<float, 4, 4, 1024, 1, false>",
        "ln_bwd_looped<float, 1024>",
    ),
    (80, "float16", False): (
        "ln_fwd<half_t, 8, 2, 16, 8, false>",
        "ln_fwd<half_t, 8, 2, 64, 2, false>",
        "ln_fwd<half_t, 8, 2, 256, 1, false>",
        "ln_fwd<half_t, 8, 2, 512, 1, false>",
        "ln_fwd<half_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<half_t, 1024>",
    ),
    (80, "float16", True): (
        "ln_bwd<half_t, 8, 2, 16, 8, false>",
        "ln_bwd<half_t, 8, 2, 64, 2, false>",
        "ln_bwd<half_t, 8, 2, 256, 1, false>",
        "ln_bwd<half_t, 8, 2, 512, 1, false>",
        "ln_bwd<half_t, 8, 2, 1024, 1, false>",
        "ln_bwd_looped<half_t, 1024>",
    ),
    (80, "bfloat16", False): (
        "ln_fwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_fwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_fwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_fwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_fwd<bf16_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<bf16_t, 1024>",
    ),
    (80, "bfloat16", True): (
        "ln_bwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_bwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_bwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 1024, 1, false>",
        "ln_bwd_looped<bf16_t, 1024>",
    ),
    (86, "float32", False): (
        "ln_fwd<float, 4, 2, 32, 4, false>",
        "ln_fwd<float, 4, 2, 128, 1, false>",
        "ln_fwd<float, 4, 2, 512, 1, false>",
        "ln_fwd<float, 4, 2, 1024, 1, false>",
        "ln_fwd<float, 4, 4, 1024, 1, false>",
        "ln_fwd_looped<float, 1024>",
    ),
    (86, "float32", True): (
        "ln_bwd<float, 4, 2, 32, 4, false>",
        "ln_bwd<float, 4, 2, 128, 1, false>",
        "ln_bwd<float, 4, 2, 512, 1, false>",
        "ln_bwd<float, 4, 2, 1024, 1, false>",
        "ln_bwd_looped<float, 1024>",
        "ln_bwd_looped<float, 1024>",
    ),
    (86, "float16", False): (
        "ln_fwd<half_t, 8, 2, 16, 8, false>",
        "ln_fwd<half_t, 8, 2, 64, 2, false>",
        "ln_fwd<half_t, 8, 2, 256, 1, false>",
        "ln_fwd<half_t, 8, 2, 512, 1, false>",
        "ln_fwd<half_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<half_t, 1024>",
    ),
    (86, "float16", True): (
        "ln_bwd<half_t, 8, 2, 16, 8, false>",
        "ln_bwd<half_t, 8, 2, 64, 2, false>",
        "ln_bwd<half_t, 8, 2, 256, 1, false>",
        "ln_bwd<half_t, 8, 2, 512, 1, false>",
        "ln_bwd_looped<half_t, 1024>",
        "ln_bwd_looped<half_t, 1024>",
    ),
    (86, "bfloat16", False): (
        "ln_fwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_fwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_fwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_fwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_fwd<bf16_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<bf16_t, 1024>",
    ),
    (86, "bfloat16", True): (
        "ln_bwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_bwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_bwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_bwd_looped<bf16_t, 1024>",
        "ln_bwd_looped<bf16_t, 1024>",
    ),
    (89, "float32", False): (
        "ln_fwd<float, 4, 2, 32, 4, false>",
        "ln_fwd<float, 4, 2, 128, 1, false>",
        "ln_fwd<float, 4, 2, 512, 1, false>",
        "ln_fwd<float, 4, 2, 1024, 1, false>",
        "ln_fwd<float, 4, 4, 1024, 1, false>",
        "ln_fwd_looped<float, 1024>",
    ),
    (89, "float32", True): (
        "ln_bwd<float, 4, 2, 32, 4, false>",
        "ln_bwd<float, 4, 2, 128, 1, false>",
        "ln_bwd<float, 4, 2, 512, 1, false>",
        "ln_bwd<float, 4, 2, 1024, 1, false>",
        "ln_bwd_looped<float, 1024>",
        "ln_bwd_looped<float, 1024>",
    ),
    (89, "float16", False): (
        "ln_fwd<half_t, 8, 2, 16, 8, false>",
        "ln_fwd<half_t, 8, 2, 64, 2, false>",
        "ln_fwd<half_t, 8, 2, 256, 1, false>",
        "ln_fwd<half_t, 8, 2, 512, 1, false>",
        "ln_fwd<half_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<half_t, 1024>",
    ),
    (89, "float16", True): (
        "ln_bwd<half_t, 8, 2, 16, 8, false>",
        "ln_bwd<half_t, 8, 2, 64, 2, false>",
        "ln_bwd<half_t, 8, 2, 256, 1, false>",
        "ln_bwd<half_t, 8, 2, 512, 1, false>",
        "ln_bwd_looped<half_t, 1024>",
        "ln_bwd_looped<half_t, 1024>",
    ),
    (89, "bfloat16", False): (
        "ln_fwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_fwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_fwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_fwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_fwd<bf16_t, 8, 4, 512, 1, false>",
        "ln_fwd_looped<bf16_t, 1024>",
    ),
    (89, "bfloat16", True): (
        "ln_bwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_bwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_bwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_bwd_looped<bf16_t, 1024>",
        "ln_bwd_looped<bf16_t, 1024>",
    ),
    (90, "float32", False): (
        "ln_fwd<float, 4, 2, 32, 4, false>",
        "ln_fwd<float, 4, 2, 128, 1, false>",
        "ln_fwd<float, 4, 2, 512, 1, false>",
        "ln_fwd<float, 4, 2, 1024, 1, false>",
        "ln_fwd<float, 4, 4, 1024, 1, false>",
        "ln_fwd_cluster<float, 4, 4, 512, 8>",
    ),
    (90, "float32", True): (
        "ln_bwd<float, 4, 2, 32, 4, false>",
        "ln_bwd<float, 4, 2, 128, 1, false>",
        "ln_bwd<float, 4, 2, 512, 1, false>",
        "ln_bwd<float, 4, 2, 1024, 1, false>",
        "ln_bwd<float, 4, 4, 1024, 1, false>",
        "ln_bwd_cluster<float, 4, 4, 512, 8, false>",
    ),
    (90, "float16", False): (
        "ln_fwd<half_t, 8, 2, 16, 8, false>",
        "ln_fwd<half_t, 8, 2, 64, 2, false>",
        "ln_fwd<half_t, 8, 2, 256, 1, false>",
        "ln_fwd<half_t, 8, 2, 512, 1, false>",
        "ln_fwd<half_t, 8, 4, 512, 1, false>",
        "ln_fwd_cluster<half_t, 8, 4, 512, 4>",
    ),
    (90, "float16", True): (
        "ln_bwd<half_t, 8, 2, 16, 8, false>",
        "ln_bwd<half_t, 8, 2, 64, 2, false>",
        "ln_bwd<half_t, 8, 2, 256, 1, false>",
        "ln_bwd<half_t, 8, 2, 512, 1, false>",
        "ln_bwd<half_t, 8, 2, 1024, 1, false>",
        "ln_bwd_cluster<half_t, 8, 4, 512, 4, false>",
    ),
    (90, "bfloat16", False): (
        "ln_fwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_fwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_fwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_fwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_fwd<bf16_t, 8, 4, 512, 1, false>",
        "ln_fwd_cluster<bf16_t, 8, 4, 512, 4>",
    ),
    (90, "bfloat16", True): (
        "ln_bwd<bf16_t, 8, 2, 16, 8, false>",
        "ln_bwd<bf16_t, 8, 2, 64, 2, false>",
        "ln_bwd<bf16_t, 8, 2, 256, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 512, 1, false>",
        "ln_bwd<bf16_t, 8, 2, 1024, 1, false>",
        "ln_bwd_cluster<bf16_t, 8, 4, 512, 4, false>",
    ),
}


@pytest.mark.parametrize("cc", ARCHS)
def test_picks_at_the_benchmark_shapes_are_pinned(cc):
    for (arch, dtype, backward), picks in PINNED.items():
        if arch != cc:
            continue
        got = tuple(K.kernel_name(dtype, K.choose(D, dtype, backward, cc), backward) for D in K.BENCH_D)
        assert got == picks, (cc, dtype, backward)
    assert {a for a, _, _ in PINNED} == set(ARCHS)


@pytest.mark.parametrize("cc", ARCHS)
def test_chosen_layouts_fit_each_architectures_limits(cc):
    limits = K.limits_for(cc)
    for dtype in DTYPES:
        for backward in (False, True):
            for D in DS:
                cfg = K.choose(D, dtype, backward, limits=limits)
                assert cfg == K.choose(D, dtype, backward, cc)  # cc alone means its known limits
                assert cfg.threads <= 1024
                assert cfg.C == 1 or limits.clusters
                if backward:
                    assert K.acc_smem_bytes(cfg, D) + K.STATIC_SMEM_RESERVE <= limits.smem_per_block_optin, (D, cfg)


def test_the_chooser_follows_the_limits_it_is_given():
    # the same GPU with less shared memory per block: the backward's accumulators must shrink or go
    h100 = K.limits_for(90)
    small = K.DeviceLimits(90, 48 * 1024, 48 * 1024, 65536, 132, True, 2048)
    for D in (4096, 8192, 16384, 65536):
        cfg = K.choose(D, "float32", True, limits=small)
        assert K.acc_smem_bytes(cfg, D) <= small.acc_budget
        assert K.acc_smem_bytes(K.choose(D, "float32", True, limits=h100), D) <= h100.acc_budget
    no_clusters = K.DeviceLimits(90, 227 * 1024, 228 * 1024, 65536, 132, False, 2048)
    assert K.choose(65536, "float32", False, limits=no_clusters).kind == "looped"
    assert K.choose(65536, "float32", False, limits=h100).kind == "cluster"
    with pytest.raises(ValueError, match="^cc"):
        K.limits_for(60)


def test_resident_blocks_counts_the_scarcest_resource():
    t4 = K.limits_for(75)
    assert t4.resident_blocks(1024, 32, 0) == 1  # 1024 threads an SM
    assert t4.resident_blocks(128, 255, 0) == 2  # 65536 registers / (255 * 128)
    assert K.limits_for(90).resident_blocks(512, 32, 100 * 1024) == 2  # 227 KB / 100 KB


@pytest.mark.parametrize("RPB", [1, 2, 8, 32])
def test_forward_grid_keeps_the_kernels_32_bit_row_counters_valid(RPB):
    # a group's counter goes first = g * RPB, then + stride while below M: it must stay an int32
    for M in [1, 5, 2**20, 2**30 - 1, 2**30, 2**30 + 12345, 2**31 - 2**22, K.MAX_ROWS]:
        groups = K.forward_groups(M, RPB)
        stride = groups * RPB
        assert 1 <= groups <= -(-M // RPB)
        last_start = (groups - 1) * RPB  # the group whose counter climbs highest
        top = last_start + ((M - 1 - last_start) // stride + 1) * stride  # its value on leaving the loop
        assert top <= 2**31 - 1, (M, RPB, groups)
    with pytest.raises(ValueError, match="^M"):
        K.forward_groups(K.MAX_ROWS + 1, RPB)
