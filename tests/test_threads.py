"""Results independent of the thread count, on shapes with many blocks and on rows longer than 2**18.

``lnlib.blocked`` cuts the M rows of a call into blocks of ``rows_per_block(D)`` rows (as many float64
rows as fit in ``BLOCK_BYTES``, at least one) and the blocks into at most ``CHUNKS`` chunks of
``ceil(blocks / CHUNKS)`` whole blocks, "set by the shape alone"; chunks run on ``LNLIB_NUM_THREADS``
threads and sums over rows are added per chunk, then pairwise over chunks. The suite's thread test
used shapes of one or two blocks, where the chunking can hardly go wrong; here:

* the chunk boundaries themselves, against the documented rule, for many (M, D), including
  D > 2**18 (one row a block), and the same under any ``LNLIB_NUM_THREADS``; the chunks' results come
  back in chunk order however long each takes;
* y, every field of the cache, dx, dgamma and dbeta bit for bit under 1, 2, 3 and 5 threads, for
  shapes of 4 to 18 blocks (up to 9 chunks), with short rows (the per-thread scratch of
  ``REPEAT_BELOW``), float64 rows beyond 2**+-400 (the scaled route) mixed in, and rows of
  2**18 + 3 and 2**18 + 1 elements.
"""

import time

import numpy as np
import pytest

from lnlib import blocked, layer_norm_backward, layer_norm_forward

THREADS = ("1", "2", "3", "5")


def test_block_size_is_what_fits_in_block_bytes():
    assert blocked.BLOCK_BYTES == 2 * 2**20 and blocked.CHUNKS == 16  # the values the shapes below assume
    for D in (1, 7, 64, 256, 1000, 4096, 2**18 - 1, 2**18):
        B = blocked.rows_per_block(D)
        assert B * 8 * D <= blocked.BLOCK_BYTES < (B + 1) * 8 * D, D  # as many float64 rows as fit
    for D in (2**18 + 1, 2**18 + 3, 2**20, 10**7):
        assert blocked.rows_per_block(D) == 1, D  # at least one: a longer row is a block by itself


def _rule(M, D):
    """The documented chunks, written out: whole blocks, at most CHUNKS chunks, ceil(blocks/CHUNKS) each."""
    B = blocked.rows_per_block(D)
    blocks = -(-M // B)
    if blocks == 0:
        return []
    per = -(-blocks // blocked.CHUNKS)
    starts = list(range(0, M, per * B))
    return [(s, min(M, s + per * B)) for s in starts]


@pytest.mark.parametrize("D", [1, 64, 300, 4096, 2**18, 2**18 + 3])
def test_chunk_boundaries_follow_the_documented_rule(monkeypatch, D):
    B = blocked.rows_per_block(D)
    for M in (0, 1, B - 1, B, B + 1, 4 * B, 4 * B + 1, 16 * B, 16 * B + 1, 17 * B, 33 * B - 1, 100 * B + 7):
        expected = _rule(M, D)
        for n in THREADS:
            monkeypatch.setenv("LNLIB_NUM_THREADS", n)
            assert blocked.chunks(M, D) == expected, (M, D, n)
        assert len(expected) <= blocked.CHUNKS
        assert all(r0 % B == 0 for r0, _ in expected)  # whole blocks
        bounds = [r for span in expected for r in span]  # each row once, in order: spans that touch
        assert bounds == sorted(bounds) and (not M or (bounds[0], bounds[-1]) == (0, M))
        assert all(a < b for a, b in expected) and all(b == c for (_, b), (c, _) in zip(expected, expected[1:]))


@pytest.mark.parametrize("n", THREADS)
def test_run_chunks_returns_results_in_chunk_order(monkeypatch, n):
    # the sums over rows are added in the order of this list: it must be the chunks' order even when
    # a later chunk finishes first (here the first chunk takes the longest)
    monkeypatch.setenv("LNLIB_NUM_THREADS", n)
    D = 2**18 + 1  # one row a block: M rows, M chunks
    spans = blocked.chunks(6, D)
    assert len(spans) == 6

    def work(r0, r1):
        time.sleep(0.01 * (6 - r0))
        return r0, r1

    assert blocked.run_chunks(work, 6, D) == spans


def _run(x, gamma, beta, dy):
    y, cache = layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    return {"y": y, "cache.x": cache.x, "cache.shifted_mean": cache.shifted_mean, "cache.rstd": cache.rstd,
            "cache.x_hat": cache.x_hat, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _case(rng, dtype, blocks, D, extra_rows=7, wide=False):
    M = blocks * blocked.rows_per_block(D) + extra_rows if D <= 2**18 else blocks
    x = (rng.standard_normal((M, D)) * 3 + 20).astype(dtype)
    if wide:  # float64 rows beyond 2**+-400 here and there: the scaled route, inside the chunks
        x[::97] *= 1e200
        x[5::101] *= 1e-200
    gamma = rng.standard_normal(D).astype(dtype)
    beta = rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal((M, D)).astype(dtype)
    return x, gamma, beta, dy


CASES = {  # name: (dtype, blocks, D, wide)
    "float32 D=64, 5 blocks (short rows: per-thread scratch)": (np.float32, 5, 64, False),
    "float16 D=1000, 6 blocks": (np.float16, 6, 1000, False),
    "float64 D=300, 4 blocks, scaled rows": (np.float64, 4, 300, True),
    "float32 D=2048, 17 blocks, 9 chunks": (np.float32, 17, 2048, False),
    "float32 D=2**18+3, 6 one-row blocks": (np.float32, 6, 2**18 + 3, False),
    "float64 D=2**18+1, 5 one-row blocks, scaled rows": (np.float64, 5, 2**18 + 1, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_output_is_bit_identical_on_any_number_of_threads(rng, monkeypatch, name):
    dtype, blocks, D, wide = CASES[name]
    x, gamma, beta, dy = _case(rng, dtype, blocks, D, wide=wide)
    M = x.shape[0]
    spans = blocked.chunks(M, D)
    assert len(spans) >= 4 and -(-M // blocked.rows_per_block(D)) >= 4  # several blocks and chunks
    runs = {}
    for n in THREADS:
        monkeypatch.setenv("LNLIB_NUM_THREADS", n)
        runs[n] = _run(x, gamma, beta, dy)
    first = runs[THREADS[0]]
    for n in THREADS[1:]:
        for key, a in first.items():
            b = runs[n][key]
            assert a.dtype == b.dtype and a.shape == b.shape, (key, n)
            assert a.tobytes() == b.tobytes(), f"{key} differs between 1 and {n} threads"
    # and the results are right, not merely repeatable: each row as if computed alone
    for r in (0, M // 2, M - 1):
        y_row, c_row = layer_norm_forward(x[r:r + 1], gamma, beta)
        assert y_row.tobytes() == first["y"][r:r + 1].tobytes()
        assert layer_norm_backward(dy[r:r + 1], c_row)[0].tobytes() == first["dx"][r:r + 1].tobytes()
