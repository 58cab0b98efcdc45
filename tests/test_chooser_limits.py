"""The CUDA layout chooser without a GPU: unaligned arrays get scalar loads, and each architecture's
published limits are the ones lnlib reasons with.

* ``lnlib.cuda.kernels.choose(..., aligned=False)`` must pick one element a load (``VW == 1``) for every
  row length, dtype, direction and architecture: a 16-byte vector load from an address that is not a
  multiple of 16 faults. It is then exactly the layout of ``vector=False`` (a cluster of blocks with
  scalar loads where the backward's accumulators need one). With aligned arrays the same row lengths
  do get vectors.
* ``lnlib.cuda.limits.KNOWN_LIMITS``: shared memory a block may opt in to, per architecture, as NVIDIA
  publishes it, and the budget for the backward's accumulators that follows from it.
"""

import pytest

from lnlib.cuda import kernels as K
from lnlib.cuda import limits as L

ARCHS = (70, 75, 80, 86, 89, 90)
DTYPES = ("float32", "float16", "bfloat16")
# every D to 1100, then a sample to 2**20 (multiples of 8 and their neighbours, where vectors fit)
DS = sorted(set(range(1, 1101)) | {m * 2**k + d for k in range(7, 21) for m in (1, 3, 5) for d in (-1, 0, 1, 8)})


@pytest.mark.parametrize("cc", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_unaligned_arrays_get_scalar_loads(cc, dtype, backward):
    vectors_when_aligned = 0
    for D in DS:
        cfg = K.choose(D, dtype, backward, cc, aligned=False)
        assert cfg.VW == 1, (D, cfg)
        assert cfg == K.choose(D, dtype, backward, cc, vector=False), D
        assert cfg == K.choose(D, dtype, backward, cc, aligned=False, vector=False), D
        vectors_when_aligned += K.choose(D, dtype, backward, cc, aligned=True).VW > 1
    assert vectors_when_aligned > len(DS) // 10  # the rule is not vacuous: aligned rows do get vectors


def test_aligned_rows_that_divide_into_vectors_get_them():
    for dtype, vw in (("float32", 4), ("float16", 8), ("bfloat16", 8)):
        for D in (vw, 64, 1024, 4096):
            assert K.choose(D, dtype, False, 90, aligned=True).VW == vw
            assert K.choose(D, dtype, False, 90, aligned=False).VW == 1
        assert K.choose(vw + 1, dtype, False, 90, aligned=True).VW == 1  # not a multiple: scalar anyway


KIB = 1024
# Shared memory one block may use after opting in (cudaDevAttrMaxSharedMemoryPerBlockOptin), and the
# shared memory of one SM, as NVIDIA publishes them:
# - CUDA C++ Programming Guide (13.1), "Compute Capability 7.x", Shared Memory: the carveout is at most
#   96 KB on Volta (7.0) and 64 KB on Turing (7.5), all of which one block may address;
# - same guide, "Compute Capability 8.x", Shared Memory: "Devices of compute capability 8.0 and 8.7 allow
#   a single thread block to address up to 163 KB of shared memory, while devices of compute
#   capabilities 8.6 and 8.9 allow up to 99 KB" (of 164 KB and 100 KB per SM);
# - Hopper Tuning Guide, Occupancy: 228 KB per SM on 9.0, of which a block may use up to 227 KB
#   (1 KB is reserved for the system).
PUBLISHED = {  # cc: (per block opt-in, per SM, threads per SM)
    70: (96 * KIB, 96 * KIB, 2048),
    75: (64 * KIB, 64 * KIB, 1024),
    80: (163 * KIB, 164 * KIB, 2048),
    86: (99 * KIB, 100 * KIB, 1536),
    89: (99 * KIB, 100 * KIB, 1536),
    90: (227 * KIB, 228 * KIB, 2048),
}


@pytest.mark.parametrize("cc", ARCHS)
def test_known_limits_are_the_published_ones(cc):
    limits = L.limits_for(cc)
    per_block, per_sm, threads = PUBLISHED[cc]
    assert limits.cc == cc and L.KNOWN_LIMITS[cc] is limits
    assert limits.smem_per_block_optin == per_block
    assert limits.smem_per_sm == per_sm
    assert limits.threads_per_sm == threads
    assert limits.regs_per_sm == 65536  # 64K 32-bit registers per SM on every one of them
    assert limits.clusters == (cc >= 90)


@pytest.mark.parametrize("cc, budget", [(70, 94 * KIB), (75, 62 * KIB), (80, 160 * KIB), (86, 97 * KIB),
                                        (89, 97 * KIB), (90, 160 * KIB)])
def test_accumulator_budget_of_each_architecture(cc, budget):
    # min(SMEM_ACC_LIMIT = 160 KiB, opt-in - STATIC_SMEM_RESERVE = 2 KiB), written out per architecture
    assert L.SMEM_ACC_LIMIT == 160 * KIB and L.STATIC_SMEM_RESERVE == 2 * KIB
    assert L.limits_for(cc).acc_budget == budget
    # and the backward's layouts keep to it at every row length
    for D in (256, 1024, 4096, 8192, 16384, 65536):
        for dtype in DTYPES:
            cfg = K.choose(D, dtype, True, cc)
            assert K.acc_smem_bytes(cfg, D) <= budget, (D, dtype, cfg)


@pytest.mark.parametrize("cc, known", [(70, 70), (72, 70), (75, 75), (80, 80), (87, 86), (89, 89), (90, 90),
                                       (100, 90), (120, 90)])
def test_an_unlisted_capability_gets_the_newest_known_one_below_it(cc, known):
    assert L.limits_for(cc) is L.KNOWN_LIMITS[known]
