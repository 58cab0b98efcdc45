"""The blocked, threaded CPU path (lnlib.layernorm over lnlib.blocked) against the readable reference.

The accuracy tests (test_accuracy, test_contract, test_properties) hold the fast path to the
long-double oracle; these check what blocking and threads could break: results that depend on the
number of threads or on where the blocks fall, a cache that is not what it says, and a backward
whose recomputed x_hat differs from the forward's.
"""

import numpy as np
import pytest

from lnlib import blocked, layer_norm_backward, layer_norm_forward, layernorm, reference, variance
from lnlib._recorded import RESULTS

from .helpers import U64, agree64

SHAPES = [(1, 1), (3, 5), (7, 1000), (130, 256), (5, 20000), (33, 16411)]  # 16411 is prime (no even split)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_agrees_with_the_reference_in_long_double(rng, shape, dtype):
    x = (rng.standard_normal(shape) * 3 + 100).astype(dtype)
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    ld = np.longdouble
    y_ref, c_ref = reference.forward(x.astype(ld), gamma.astype(ld), beta.astype(ld))
    dx_ref, dg_ref, db_ref = reference.backward(dy.astype(ld), c_ref)
    # one rounding to the output dtype (u = eps / 2) plus float64 work: sums of D <= 20000 terms
    # (NumPy's pairwise sums, depth <= 26, or einsum's in-order sums for 16- and 32-bit inputs:
    # D u64 = 2.2e-12, far below u32); for float64 outputs the float64 work is the whole error, at most
    # depth u64 kappa with kappa ~ 3 here (rows N(100, 9): the shift leaves the spread). 4 eps = 8 u:
    # measured at most 0.3 of it over the variation matrix
    tol = 4 * np.finfo(dtype).eps
    # dx is a difference of terms of size rstd * |gamma * dy|: its error is measured against them
    terms = c_ref[2][..., None] * np.max(np.abs(gamma * dy.astype(float)), axis=-1, keepdims=True)
    for got, want, scale in ((y, y_ref, None), (dx, dx_ref, terms), (dgamma, dg_ref, None), (dbeta, db_ref, None)):
        if scale is None:
            scale = np.max(np.abs(want.astype(float)), axis=-1, keepdims=True)
        assert np.all(np.abs(got.astype(ld) - want) <= tol * scale + np.finfo(dtype).smallest_subnormal)


@pytest.mark.parametrize("shape", [(257, 300), (40, 9000), (3000, 7)])
def test_results_do_not_depend_on_the_number_of_threads(rng, monkeypatch, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    dy = rng.standard_normal(shape).astype(np.float32)
    runs = []
    for n in ("1", "2", "5"):
        monkeypatch.setenv("LNLIB_NUM_THREADS", n)
        y, cache = layer_norm_forward(x, gamma, beta)
        runs.append([y, cache.shifted_mean, cache.rstd, *layer_norm_backward(dy, cache)])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.tobytes() == b.tobytes()


def test_bad_thread_count_is_named(monkeypatch):
    monkeypatch.setenv("LNLIB_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="LNLIB_NUM_THREADS"):
        blocked.threads()


def test_chunks_cover_every_row_once_in_whole_blocks():
    for M in (0, 1, 5, 17, 1000, 65536):
        for D in (1, 7, 256, 4096, 40000):
            spans = blocked.chunks(M, D)
            assert len(spans) <= blocked.CHUNKS
            rows = [r for r0, r1 in spans for r in range(r0, r1)]
            assert rows == list(range(M))
            B = blocked.rows_per_block(D)
            assert all(r0 % B == 0 for r0, _ in spans)


def test_cache_holds_x_and_two_numbers_a_row(rng):
    x = (rng.standard_normal((64, 512)) + 1e4).astype(np.float32)
    gamma = rng.standard_normal(512).astype(np.float32)
    _, cache = layer_norm_forward(x, gamma)
    assert cache.nbytes <= x.nbytes + 16 * 64 + 8 * 512
    # mean is the mean of the row less its first element; rstd as defined
    x64 = x.astype(np.float64)
    shifted = x64 - x64[:, :1]
    # float64 means of 512 terms of size ~1 in two summation orders (agree64), and rstd against
    # NumPy's two-pass variance, within (h + 3) u64 + (h u64 kappa)^2 (Chan, Golub and LeVeque; h its
    # summation depth, kappa = 1e4): 2.4e-15, so 10x that (measured equal bit for bit over 20 seeds)
    np.testing.assert_allclose(cache.shifted_mean, shifted.mean(axis=1), rtol=0, atol=agree64(512, kappa=1.0))
    h = variance.numpy_sum_depth(512)
    np.testing.assert_allclose(cache.rstd, 1 / np.sqrt(x64.var(axis=1) + 1e-5),
                               rtol=10 * ((h + 3) * U64 + (h * U64 * 1e4) ** 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_recomputes_the_forwards_x_hat_bit_for_bit(rng, dtype):
    # wide float64 rows (beyond 2**+-400) take the scaled route in both directions
    scales = [1, 1e-130, 1e130, 1e300, 1e-300, 1e6] if dtype == np.float64 else [1, 1e-30, 1e30, 1e-40, 1e6, 1]
    x = (rng.standard_normal((6, 300)) * np.array(scales)[:, None]).astype(dtype)
    y, cache = layer_norm_forward(x)  # no gamma, no beta: y is x_hat rounded to the input's dtype
    if dtype == np.float64:
        assert np.array_equal(y, cache.x_hat)
    else:
        finite = np.all(np.isfinite(x), axis=1)
        assert np.array_equal(y[finite], cache.x_hat[finite].astype(np.float32))


@pytest.mark.parametrize("D", [1, 3, 64, 100, 127, 128, 300])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_short_row_shortcuts_change_no_value(rng, monkeypatch, D, dtype):
    # Writing out the per-row numbers and tiling gamma/beta only change how NumPy loops: the same bits
    # as plain broadcasts, including a last block whose rows do not fill a tile. Sums over rows
    # (dgamma, dbeta) add in another order: equal to within the output's rounding.
    M = 2 * blocked.rows_per_block(D) + 37
    x = (rng.standard_normal((M, D)) * 3 + 50).astype(dtype)
    gamma, beta = rng.standard_normal(D).astype(dtype), rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal((M, D)).astype(dtype)
    assert layernorm.TILE_WIDTH // D > 1  # the tiled path runs for these rows
    runs = []
    for repeat_below, tile_width in ((layernorm.REPEAT_BELOW, layernorm.TILE_WIDTH), (0, 0)):
        monkeypatch.setattr(layernorm, "REPEAT_BELOW", repeat_below)
        monkeypatch.setattr(layernorm, "TILE_WIDTH", tile_width)
        for g, b in ((gamma, beta), (gamma, None), (None, beta)):
            y, cache = layer_norm_forward(x, g, b)
            dx, dgamma, dbeta = layer_norm_backward(dy, cache)
            runs.append(([y, cache.shifted_mean, cache.rstd, cache.x_hat, dx],
                         [s for s in (dgamma, dbeta) if s is not None]))
    # dgamma and dbeta add the rows in another order: for 16- and 32-bit outputs the float64 sums
    # differ by far less than an ulp of the output, so the rounded results by at most one ulp
    # (eps |b|); for float64 outputs by (rows) u64 sum|terms| (Higham), under eps max|b| for these
    # rows; measured at most 0.5 of it over the variation matrix
    u = np.finfo(dtype).eps
    for (exact, sums), (exact_plain, sums_plain) in zip(runs[:3], runs[3:]):
        for a, b in zip(exact, exact_plain, strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        for a, b in zip(sums, sums_plain, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=u, atol=u * float(np.max(np.abs(b))))


def test_blocks_boundaries_do_not_change_rows(rng, monkeypatch):
    # a row's results depend only on the row: the same row in different blocks gives the same bits
    row = (rng.standard_normal(300) * 5 + 7).astype(np.float32)
    x = np.tile(row, (1000, 1))
    y, cache = layer_norm_forward(x)
    assert np.all(y == y[0]) and np.all(cache.rstd == cache.rstd[0])


@pytest.mark.parametrize("path", sorted(RESULTS.glob("cpu-*.json")), ids=lambda p: p.name)
def test_every_recorded_cpu_benchmark_has_provenance_and_honest_goal_flags(path):
    """Each shipped record names the commit it measured, and its goal rows agree with its own timings.

    Whether lnlib is within 2x of PyTorch is the recorded machine's property (it holds on one record
    and not on another), so it is checked where it is claimed, in the chapter, not here.
    """
    import re
    import subprocess

    from lnlib import cpu_results

    data = cpu_results.load(path)
    commit = data["provenance"]["git_commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit), "the recorded run names the full commit it measured"
    known = subprocess.run(["git", "cat-file", "-t", commit], capture_output=True, text=True,
                           cwd=cpu_results.RESULTS.parent)
    if known.returncode == 0 or "not a git repository" not in known.stderr:  # from a clone: it must exist
        assert known.stdout.strip() == "commit"
    seconds = {(r["impl"], r["pass"], r["rows"], r["cols"]): r["seconds"] for r in data["rows"]}
    goals = {(g["rows"], g["cols"], g["pass"]): g for g in data["goal"]}
    assert len(goals) == 6
    for M, D in ((4096, 4096), (65536, 256), (512, 32768)):
        for pas in ("forward", "backward"):
            ratio = seconds[("lnlib", pas, M, D)] / seconds[("torch", pas, M, D)]
            # the record stores what it computed from its own rows: equal up to the last bit
            assert goals[(M, D, pas)]["ratio"] == pytest.approx(ratio, rel=1e-12)
            assert goals[(M, D, pas)]["met"] == (ratio <= data["goal_ratio"])
    for r in data["rows"]:  # throughput is the bytes a pass must move over its time
        s = 4
        want = (2 if r["pass"] == "forward" else 3) * r["rows"] * r["cols"] * s + 2 * r["cols"] * s
        assert r["bytes"] == want and r["gbps"] == pytest.approx(r["bytes"] / r["seconds"] / 1e9, rel=1e-12)
