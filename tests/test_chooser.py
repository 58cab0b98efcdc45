"""The layout chooser, without a GPU: its rules over every row length, and its picks pinned.

``lnlib.cuda.kernels.choose`` is pure Python; a change to it that alters what runs at the benchmark's
shapes must show up here (update PINNED on purpose, with the measurement that justified it).
"""

import pytest

from lnlib.cuda import families as F
from lnlib.cuda import kernels as K
from lnlib.cuda import limits as L

ARCHS = (70, 75, 80, 86, 89, 90)
DTYPES = ("float32", "float16", "bfloat16")
DS = K.INSTANCE_DS  # every D up to 4096, then a dense sample to 262144 and powers of two to 2**20


@pytest.mark.parametrize("cc", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_layout_rules_hold_for_every_row_length(cc, dtype, backward):
    s = L.ITEMSIZE[dtype]
    for D in DS:
        for vector in (True, False):
            cfg = K.choose(D, dtype, backward, cc, vector=vector)
            where = f"D={D} {cfg}"
            assert cfg.threads <= L.MAX_THREADS, where
            if cfg.kind == "looped":
                continue
            if cfg.VW > 1:
                assert vector and D % cfg.VW == 0 and cfg.VW * s == L.VECTOR_BYTES, where
            assert cfg.VW * cfg.N * cfg.TPR * cfg.C >= D, where  # the threads cover the row
            assert cfg.N * cfg.VW * s <= L.MAX_BYTES_PER_THREAD, where  # the register budget
            if cfg.kind == "cluster":
                assert cc >= 90 and cfg.C in (2, 4, 8) and cfg.TPR == 512 and cfg.RPB == 1, where
                assert D % (cfg.C * cfg.VW) == 0, where  # every block of the cluster gets whole vectors
            else:
                assert cfg.C == 1, where
            if backward:  # the dgamma/dbeta accumulators of a block fit in shared memory
                assert K.acc_smem_bytes(cfg, D) <= L.limits_for(cc).acc_budget, where


def R(VW, N, TPR, RPB):
    """A layout of the row kernels (ln_fwd, ln_bwd): the row in registers."""
    return K.RowConfig("rows", VW, N, TPR, RPB)


def CL(VW, N, TPR, C):
    """A layout of the cluster kernels (ln_fwd_cluster, ln_bwd_cluster): the row over C blocks."""
    return K.RowConfig("cluster", VW, N, TPR, 1, C)


LOOPED = K.RowConfig("looped")  # ln_fwd_looped, ln_bwd_looped

# (cc, dtype, backward): the layouts picked at BENCH_D = (256, 1024, 4096, 8192, 16384, 65536). The
# sm_90 picks were measured on an H100; the others follow from each architecture's limits
# (KNOWN_LIMITS).
PINNED = {
    (70, "float32", False): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        LOOPED,
    ),
    (70, "float32", True): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        LOOPED,
        LOOPED,
    ),
    (70, "float16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (70, "float16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        LOOPED,
        LOOPED,
    ),
    (70, "bfloat16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (70, "bfloat16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        LOOPED,
        LOOPED,
    ),
    (75, "float32", False): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        LOOPED,
    ),
    (75, "float32", True): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        LOOPED,
        LOOPED,
        LOOPED,
    ),
    (75, "float16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (75, "float16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        LOOPED,
        LOOPED,
        LOOPED,
    ),
    (75, "bfloat16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (75, "bfloat16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        LOOPED,
        LOOPED,
        LOOPED,
    ),
    (80, "float32", False): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        LOOPED,
    ),
    (80, "float32", True): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        LOOPED,
    ),
    (80, "float16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (80, "float16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 2, 1024, 1),
        LOOPED,
    ),
    (80, "bfloat16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (80, "bfloat16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 2, 1024, 1),
        LOOPED,
    ),
    (86, "float32", False): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        LOOPED,
    ),
    (86, "float32", True): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        LOOPED,
        LOOPED,
    ),
    (86, "float16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (86, "float16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        LOOPED,
        LOOPED,
    ),
    (86, "bfloat16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (86, "bfloat16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        LOOPED,
        LOOPED,
    ),
    (89, "float32", False): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        LOOPED,
    ),
    (89, "float32", True): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        LOOPED,
        LOOPED,
    ),
    (89, "float16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (89, "float16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        LOOPED,
        LOOPED,
    ),
    (89, "bfloat16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        LOOPED,
    ),
    (89, "bfloat16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        LOOPED,
        LOOPED,
    ),
    (90, "float32", False): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        CL(4, 4, 512, 8),
    ),
    (90, "float32", True): (
        R(4, 2, 32, 4),
        R(4, 2, 128, 1),
        R(4, 2, 512, 1),
        R(4, 2, 1024, 1),
        R(4, 4, 1024, 1),
        CL(4, 4, 512, 8),
    ),
    (90, "float16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        CL(8, 4, 512, 4),
    ),
    (90, "float16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 2, 1024, 1),
        CL(8, 4, 512, 4),
    ),
    (90, "bfloat16", False): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 4, 512, 1),
        CL(8, 4, 512, 4),
    ),
    (90, "bfloat16", True): (
        R(8, 2, 16, 8),
        R(8, 2, 64, 2),
        R(8, 2, 256, 1),
        R(8, 2, 512, 1),
        R(8, 2, 1024, 1),
        CL(8, 4, 512, 4),
    ),
}


@pytest.mark.parametrize("cc", ARCHS)
def test_picks_at_the_benchmark_shapes_are_pinned(cc):
    for (arch, dtype, backward), picks in PINNED.items():
        if arch != cc:
            continue
        got = tuple(K.choose(D, dtype, backward, cc) for D in K.BENCH_D)
        assert got == picks, (cc, dtype, backward)
        for cfg in picks:  # and the kernel that runs each is its kind's family with the layout's values
            inst = K.backward_instance(dtype, cfg) if backward else K.forward_instance(dtype, cfg)
            family, values = F.parse_name(inst.name)
            assert family is (K.BACKWARD_FAMILY if backward else K.FORWARD_FAMILY)[cfg.kind] is inst.family
            assert all(values[k] == getattr(cfg, k) for k in values if k not in ("T", "NT"))
    assert {a for a, _, _ in PINNED} == set(ARCHS)


@pytest.mark.parametrize("cc", ARCHS)
def test_chosen_layouts_fit_each_architectures_limits(cc):
    limits = L.limits_for(cc)
    for dtype in DTYPES:
        for backward in (False, True):
            for D in DS:
                cfg = K.choose(D, dtype, backward, limits=limits)
                assert cfg == K.choose(D, dtype, backward, cc)  # cc alone means its known limits
                assert cfg.threads <= L.MAX_THREADS
                assert cfg.C == 1 or limits.clusters
                if backward:
                    assert K.acc_smem_bytes(cfg, D) + L.STATIC_SMEM_RESERVE <= limits.smem_per_block_optin, (D, cfg)


def test_the_chooser_follows_the_limits_it_is_given():
    # the same GPU with less shared memory per block: the backward's accumulators must shrink or go
    h100 = L.limits_for(90)
    small = L.DeviceLimits(90, 48 * 1024, 48 * 1024, 65536, 132, True, 2048)
    for D in (4096, 8192, 16384, 65536):
        cfg = K.choose(D, "float32", True, limits=small)
        assert K.acc_smem_bytes(cfg, D) <= small.acc_budget
        assert K.acc_smem_bytes(K.choose(D, "float32", True, limits=h100), D) <= h100.acc_budget
    no_clusters = L.DeviceLimits(90, 227 * 1024, 228 * 1024, 65536, 132, False, 2048)
    assert K.choose(65536, "float32", False, limits=no_clusters).kind == "looped"
    assert K.choose(65536, "float32", False, limits=h100).kind == "cluster"
    with pytest.raises(ValueError, match="^cc"):
        L.limits_for(60)


def test_resident_blocks_counts_the_scarcest_resource():
    t4 = L.limits_for(75)
    assert t4.resident_blocks(1024, 32, 0) == 1  # 1024 threads an SM
    assert t4.resident_blocks(128, 255, 0) == 2  # 65536 registers / (255 * 128)
    assert L.limits_for(90).resident_blocks(512, 32, 100 * 1024) == 2  # 227 KB / 100 KB


@pytest.mark.parametrize("RPB", [1, 2, 8, 32])
def test_forward_grid_keeps_the_kernels_32_bit_row_counters_valid(RPB):
    # a group's counter goes first = g * RPB, then + stride while below M: it must stay an int32
    for M in [1, 5, 2**20, 2**30 - 1, 2**30, 2**30 + 12345, 2**31 - 2**22, L.MAX_ROWS]:
        groups = K.forward_groups(M, RPB)
        stride = groups * RPB
        assert 1 <= groups <= -(-M // RPB)
        last_start = (groups - 1) * RPB  # the group whose counter climbs highest
        top = last_start + ((M - 1 - last_start) // stride + 1) * stride  # its value on leaving the loop
        assert top <= 2**31 - 1, (M, RPB, groups)
        # and as large as that allows: one more group would push the last group's counter past it
        if groups < -(-M // RPB):
            assert M - 1 + (groups + 1) * RPB > 2**31 - 1, (M, RPB, groups)
    with pytest.raises(ValueError, match="^M"):
        K.forward_groups(L.MAX_ROWS + 1, RPB)
