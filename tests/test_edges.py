"""Edges a second mutation audit found untested: each test fails on one plausible one-line bug.

Negative-dominated huge rows (the scaling must look at magnitudes), NumPy's buffer size left as the
caller set it, the leaderboard scoring the typical version against its own eps, an array read twice
counted once, and the GPU helpers' inclusive limits (INT_MAX, a version's largest D) and their
errors for CPU tensors, which need no GPU.
"""

import numpy as np
import pytest

from lnlib import bench, layer_norm_backward, layer_norm_forward, leaderboard, typical
from lnlib.cuda import api, families, versions
from lnlib.cuda.limits import INT_MAX
from lnlib.oracle import layer_norm_longdouble, max_rel_error

from .helpers import CONTRACT


@pytest.mark.parametrize("row", [[-1e300, -5e299, 1.0], [-3e-300, -1e-300, 2e-310]])
def test_rows_dominated_by_negative_values_are_scaled_by_their_magnitude(row):
    # the largest value of [-1e300, -5e299, 1] is 1: scaling by it would leave the squares to overflow
    x = np.array([row])
    y, _ = layer_norm_forward(x)
    assert np.all(np.isfinite(y))
    assert max_rel_error(y, layer_norm_longdouble(x)) < CONTRACT[np.float64][0]
    assert np.array_equal(layer_norm_forward(-x)[0], -y)  # LN(-x) = -LN(x), bit for bit


@pytest.mark.parametrize("threads", ["1", "2"])
def test_numpys_buffer_size_is_left_as_the_caller_set_it(monkeypatch, threads):
    monkeypatch.setenv("LNLIB_NUM_THREADS", threads)
    before = np.getbufsize()
    try:
        np.setbufsize(4096)  # not NumPy's default, so a restore to the default would show too
        for shape in ((2, 8), (3000, 64)):  # one chunk (the calling thread) and several
            x = np.ones(shape, np.float32) + np.arange(shape[1], dtype=np.float32)
            _, cache = layer_norm_forward(x)
            assert np.getbufsize() == 4096
            layer_norm_backward(np.ones(shape, np.float32), cache)
            assert np.getbufsize() == 4096
    finally:
        np.setbufsize(before)


def test_the_typical_version_is_scored_against_its_own_eps():
    # with eps = 1e-8 against 1e-5, rows of variance 1e-40 give a y 30x larger: scored against the
    # wrong eps it would look 30x wrong; against its own, it is a float32 result (contract bound)
    rows = {r.impl: r for r in leaderboard.run(cases=["tiny 1e-20"])}
    ours = rows["typical online (eps 1e-8)"]
    assert typical.DEFAULT_EPS == 1e-8
    assert ours.y < CONTRACT[np.float32][1] and ours.dx < CONTRACT[np.float32][1]


def test_an_array_read_twice_by_one_operation_is_counted_once():
    x = np.ones((4, 8), np.float32)
    b = np.full((4, 8), 0.5, np.float32)
    assert bench.memory_traffic(lambda a: a * a, x) == (x.nbytes, x.nbytes)
    assert bench.memory_traffic(lambda a: np.clip(a, b, b), x) == (2 * x.nbytes, x.nbytes)


def test_int_arguments_fit_a_32_bit_int_at_both_ends():
    convert = lambda P: families.LN_COL_SUM.launch_args(part=0, P=P, D=8, out=None)  # noqa: E731
    assert INT_MAX == 2**31 - 1
    for P in (INT_MAX, -INT_MAX - 1):
        assert np.int32(P) in convert(P)
    for P in (INT_MAX + 1, -INT_MAX - 2):
        with pytest.raises(ValueError, match="32-bit int"):
            convert(P)


@pytest.mark.parametrize("version", sorted(versions.MAX_D))
def test_each_register_version_takes_its_largest_row_and_no_longer(version):
    D = versions.MAX_D[version]
    kernel, threads = versions.launch_config(version, D)
    assert 32 <= threads <= 1024 and kernel.startswith(version)
    with pytest.raises(ValueError, match=f"D <= {D}"):
        versions.launch_config(version, D + 4)  # + 4 keeps the 16-byte versions' divisibility


def test_the_gpu_api_refuses_a_cpu_tensor_by_name():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="^x must be a CUDA tensor"):
        api.layer_norm_forward(torch.zeros(2, 4))
