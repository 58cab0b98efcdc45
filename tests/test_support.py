"""The book's support modules: plotting style, cost measurement, the typical online version kept for comparison."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lnlib import bench, layer_norm_backward, layer_norm_forward, plotting, typical  # noqa: E402
from lnlib.oracle import max_rel_error  # noqa: E402
from .helpers import agree64  # noqa: E402


def test_style_is_opaque_and_colour_blind_safe():
    plotting.use_style()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    ax.set_xlabel("D")
    ax.set_ylabel("seconds")
    assert fig.get_facecolor()[3] == 1.0
    assert matplotlib.rcParams["savefig.transparent"] is False
    assert ax.lines[0].get_color() == plotting.PALETTE[0]
    plotting.check_figure(fig)
    plt.close(fig)


def test_check_figure_rejects_unlabelled_and_transparent():
    plotting.use_style()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    ax.set_xlabel("x")
    with pytest.raises(ValueError, match="y label"):
        plotting.check_figure(fig)
    ax.set_ylabel("y")
    fig.patch.set_alpha(0.0)
    with pytest.raises(ValueError, match="opaque"):
        plotting.check_figure(fig)
    plt.close(fig)


def test_bench_measures_memory_of_temporaries():
    small = bench.peak_memory(np.zeros, 1000)
    big = bench.peak_memory(lambda: np.ones(1_000_000) + np.ones(1_000_000))  # two live inputs
    assert small < 100_000 and big >= 16_000_000


def test_bench_time_is_positive_and_ordered():
    a = np.ones(100)
    b = np.ones(1_000_000)
    assert 0 < bench.time_call(np.sum, a, repeat=3) < bench.time_call(np.sum, b, repeat=3)


def test_count_ops_counts_function_forms_and_contractions():
    a, b = np.ones((4, 8)), np.ones((8, 5))
    # a function form counts what its method form counts (it used to count nothing)
    assert bench.count_ops(lambda x: np.mean(x, -1), a) == bench.count_ops(lambda x: x.mean(-1), a) == 36
    assert bench.count_ops(lambda x: np.var(x, -1), a) == bench.count_ops(lambda x: x.var(-1), a) > 36
    # (4, 8) @ (8, 5): 20 outputs, each 8 multiplies and 8 adds, however the product is written
    products = [lambda x, y: x @ y, np.dot, lambda x, y: np.einsum("ij,jk->ik", x, y),
                lambda x, y: np.tensordot(x, y, 1)]
    assert [bench.count_ops(f, a, b) for f in products] == [320] * 4
    assert bench.count_ops(lambda x: x[0] @ x[0], a) == 16
    assert bench.count_ops(lambda x: np.outer(x[0], x[0]), a) == 64
    assert bench.count_ops(lambda x: np.dot(x, 2.0), a) == 32  # a scalar operand: one multiply each
    assert bench.count_ops(lambda x: np.full_like(x, 0.5) + 0 * x, a) == 64  # constants are free


def test_peak_memory_leaves_an_outer_trace_running():
    import tracemalloc

    tracemalloc.start()
    try:
        assert bench.peak_memory(np.ones, 1_000_000) >= 8_000_000
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_typical_matches_lnlib_but_keeps_a_fat_cache(rng):
    x = rng.standard_normal((2, 3, 16))
    gamma, beta, dy = rng.standard_normal(16), rng.standard_normal(16), rng.standard_normal(x.shape)
    y, cache = typical.forward(x, gamma, beta, eps=1e-5)
    y2, c2 = layer_norm_forward(x, gamma, beta)
    # two float64 evaluations, rows of D = 16 (tests/helpers.py)
    assert max_rel_error(y, y2) < agree64(16, kappa=1.0)
    for a, b in zip(typical.backward(dy, cache), layer_norm_backward(dy, c2)):
        assert max_rel_error(a, b) < agree64(16)
    assert len(cache) == 12
    assert typical.cache_nbytes(cache) > 2 * c2.nbytes


def test_check_figure_rejects_small_type_and_a_legend_on_the_data():
    plotting.use_style()
    fig, ax = plt.subplots(figsize=(14, 3))  # 10-pt labels shrink below 8 pt in a 690-px column
    ax.plot([1, 2], [3, 4], label="a")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    with pytest.raises(ValueError, match="below 8"):
        plotting.check_figure(fig)
    plotting.finish(fig)  # raises the type to the minimum, then passes
    plt.close(fig)

    fig, ax = plt.subplots()
    ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50), label="diagonal", marker="o")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="center")
    with pytest.raises(ValueError, match="legend covers"):
        plotting.check_figure(fig)
    plt.close(fig)


def test_check_figure_rejects_a_log_axis_without_labels():
    plotting.use_style()
    fig, ax = plt.subplots()
    ax.semilogy([1, 2], [2.0, 3.0])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.yaxis.set_major_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    with pytest.raises(ValueError, match="fewer than two labelled ticks"):
        plotting.check_figure(fig)
    plt.close(fig)


def test_check_figure_rejects_tick_labels_that_touch():
    plotting.use_style()
    fig, ax = plt.subplots(figsize=(4, 3))
    ds = [256, 1024, 4096, 8192, 16384, 65536]
    ax.semilogx(ds, ds)
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.minorticks_off()
    ax.set_xlabel("D")
    ax.set_ylabel("y")
    with pytest.raises(ValueError, match="tick labels overlap"):
        plotting.check_figure(fig)
    plt.close(fig)
