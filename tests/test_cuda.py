"""lnlib.cuda against float64/long-double references on fresh random data. Skipped without a GPU."""

import numpy as np
import pytest

from lnlib.cuda import api

pytestmark = pytest.mark.skipif(not api.is_available(), reason="no CUDA GPU (CuPy sees no device)")

if api.is_available():
    import cupy as cp

from lnlib.cuda.limits import TOL  # noqa: E402  (y, gradients) per dtype, against long double
from lnlib.oracle import layer_norm_longdouble, max_rel_error  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


@pytest.fixture
def poisoned():
    """Every CuPy allocation starts as NaN bytes (0xFF), so an unwritten output element fails the check."""
    pool = cp.cuda.MemoryPool()

    def malloc(size):
        mem = pool.malloc(size)
        cp.cuda.runtime.memset(mem.ptr, 0xFF, size)
        return mem

    cp.cuda.set_allocator(malloc)
    yield
    cp.cuda.set_allocator(cp.get_default_memory_pool().malloc)


def _case(rng, M, D, offset, dtype=np.float32):
    x = (offset + rng.standard_normal((M, D))).astype(dtype)
    gamma = (1 + 0.5 * rng.standard_normal(D)).astype(dtype)
    beta = rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal((M, D)).astype(dtype)
    return x, gamma, beta, dy


def _run(x, gamma, beta, dy):
    xg, gg, bg, dyg = (cp.asarray(a) for a in (x, gamma, beta, dy))
    y, cache = api.layer_norm_forward(xg, gg, bg)
    dx, dgamma, dbeta = api.layer_norm_backward(dyg, cache)
    return [cp.asnumpy(a) for a in (y, dx, dgamma, dbeta)]


SHAPES = [(1, 1), (7, 1), (5, 2), (3, 3), (33, 7), (4, 31), (17, 64), (9, 100), (64, 256), (5, 768), (3, 1000),
          (130, 1024), (2, 4096), (3, 8192), (2, 16384), (2, 65536), (1, 100003), (2, 262144)]


@pytest.mark.parametrize("M,D", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
def test_float32_against_long_double(poisoned, M, D, offset):
    rng = np.random.default_rng(hash((M, D, offset)) % 2**32)
    x, gamma, beta, dy = _case(rng, M, D, offset)
    y, dx, dgamma, dbeta = _run(x, gamma, beta, dy)
    ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    errs = [max_rel_error(a, r) for a, r in ((y, ry), (dx, rdx), (dgamma, rdg), (dbeta, rdb))]
    if D == 1:  # exact: y = beta, dx = dgamma = 0
        assert np.array_equal(y, np.broadcast_to(beta, y.shape)) and not dx.any() and not dgamma.any()
        return
    if D == 2:  # dx is an eps effect, a difference of terms 1/(eps rstd^2) larger: only y and params
        errs[1] = 0.0
    assert errs[0] < TOL["float32"][0] and max(errs[1:]) < TOL["float32"][1], errs


# 24576 and 32768 (and 24584, 20000 with scalar loads): the layouts chosen so a 1024-thread block
# does not spill (a cluster of two on sm_90, looped elsewhere)
@pytest.mark.parametrize("M,D", [(64, 256), (8, 4096), (2, 65536), (3, 100), (3, 24576), (3, 32768), (3, 24584),
                                 (3, 20000)])
def test_float16_cupy(poisoned, M, D):
    rng = np.random.default_rng(D)
    x, gamma, beta, dy = _case(rng, M, D, 10.0, np.float16)
    y, dx, dgamma, dbeta = _run(x, gamma, beta, dy)
    ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    assert y.dtype == np.float16
    ty, tg = TOL["float16"]
    assert max_rel_error(y, ry) < ty and max_rel_error(dx, rdx) < tg
    assert max_rel_error(dgamma, rdg) < tg and max_rel_error(dbeta, rdb) < tg


@pytest.mark.skipif(torch is None or not (torch and torch.cuda.is_available()), reason="needs CUDA torch")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M,D", [(64, 256), (16, 1024), (4, 8192), (2, 65536), (5, 7)])
def test_torch_tensors(M, D, dtype):
    tdt = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(D)
    x = (3 + torch.randn(M, D, device="cuda", generator=g)).to(tdt)
    gamma = (1 + 0.5 * torch.randn(D, device="cuda", generator=g)).to(tdt)
    beta = torch.randn(D, device="cuda", generator=g).to(tdt)
    dy = torch.randn(M, D, device="cuda", generator=g).to(tdt)
    before = [t.clone() for t in (x, gamma, beta, dy)]
    y, cache = api.layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = api.layer_norm_backward(dy, cache)
    assert all(isinstance(t, torch.Tensor) and t.dtype == tdt for t in (y, dx, dgamma, dbeta))
    for t, b in zip((x, gamma, beta, dy), before):
        assert torch.equal(t, b)  # inputs never modified
    f = lambda t: t.float().cpu().numpy()  # noqa: E731
    ry, rdx, rdg, rdb = layer_norm_longdouble(f(x), f(gamma), f(beta), 1e-5, f(dy))
    tol = TOL[dtype]
    assert max_rel_error(f(y), ry) < tol[0]
    for a, r in ((dx, rdx), (dgamma, rdg), (dbeta, rdb)):
        assert max_rel_error(f(a), r) < tol[1]


@pytest.mark.skipif(torch is None or not (torch and torch.cuda.is_available()), reason="needs CUDA torch")
def test_torch_side_stream_is_followed():
    # x is written on a side stream behind a long sleep: launching anywhere but on torch's current
    # stream (or allocating scratch memory for another stream) would read x before it is ready
    g = torch.Generator(device="cuda").manual_seed(5)
    src = 2 + torch.randn(256, 4096, device="cuda", generator=g)
    gamma, beta = torch.randn(4096, device="cuda", generator=g), torch.randn(4096, device="cuda", generator=g)
    dy_src = torch.randn(256, 4096, device="cuda", generator=g)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x, dy = torch.zeros_like(src), torch.zeros_like(dy_src)
        torch.cuda._sleep(200_000_000)  # about 0.1 s on the GPU
        x.copy_(src)
        dy.copy_(dy_src)
        y, cache = api.layer_norm_forward(x, gamma, beta)
        dx, dgamma, dbeta = api.layer_norm_backward(dy, cache)
    side.synchronize()
    f = lambda t: t.double().cpu().numpy()  # noqa: E731
    ry, rdx, rdg, rdb = layer_norm_longdouble(f(src), f(gamma), f(beta), 1e-5, f(dy_src))
    assert max_rel_error(f(y), ry) < TOL["float32"][0]
    for a, r in ((dx, rdx), (dgamma, rdg), (dbeta, rdb)):
        assert max_rel_error(f(a), r) < TOL["float32"][1]


def test_quick_benchmark_checks_and_measures():
    # the GPU chapter's live section
    from lnlib.cuda import timing

    res = timing.quick_benchmark(Ds=(256, 1024), mib=16)
    assert res["copy_gbps"] > 10 and res["device"]
    assert {(r["impl"], r["pass"]) for r in res["rows"]} >= {("lnlib", "forward"), ("lnlib", "backward")}
    for r in res["rows"]:
        assert r["max_rel_error"] < TOL["float32"][1] and r["gbps"] > 0 and r["percent_of_copy"] == pytest.approx(100 * r["gbps"] / res["copy_gbps"])


def test_dgamma_dbeta_bitwise_deterministic():
    rng = np.random.default_rng(0)
    for M, D in [(4099, 256), (1000, 4096), (64, 65536)]:
        x, gamma, beta, dy = (cp.asarray(a) for a in _case(rng, M, D, 1.0))
        _, cache = api.layer_norm_forward(x, gamma, beta)
        runs = [api.layer_norm_backward(dy, cache) for _ in range(5)]
        for r in runs[1:]:
            for a, b in zip(runs[0], r):
                assert cp.asnumpy(a).tobytes() == cp.asnumpy(b).tobytes()


def test_nan_inf_stay_in_their_row():
    rng = np.random.default_rng(1)
    x, gamma, beta, dy = _case(rng, 6, 1024, 0.0)
    x[1, 5], x[3, 0] = np.nan, np.inf
    y, dx, dgamma, dbeta = _run(x, gamma, beta, dy)
    bad = np.isnan(y).any(-1)
    assert list(bad) == [False, True, False, True, False, False]
    assert np.all(np.isfinite(y[~bad])) and np.all(np.isfinite(dx[~bad]))


def test_no_affine_and_shapes():
    rng = np.random.default_rng(2)
    x = cp.asarray(rng.standard_normal((2, 3, 40)).astype(np.float32))
    y, cache = api.layer_norm_forward(x)
    dx, dgamma, dbeta = api.layer_norm_backward(cp.asarray(rng.standard_normal((2, 3, 40)).astype(np.float32)), cache)
    assert y.shape == dx.shape == (2, 3, 40) and dgamma is None and dbeta is None
    assert cache.mean_shift.nbytes + cache.rstd.nbytes == 8 * 6  # 8 bytes a row
    ry = layer_norm_longdouble(cp.asnumpy(x))
    assert max_rel_error(cp.asnumpy(y), ry) < TOL["float32"][0]


def test_more_than_2_to_31_elements():
    # 32769 x 65536 float16 = 2^31 + 65536 elements: 64-bit indexing
    M, D = 32769, 65536
    rng = cp.random.default_rng(3)
    x = (rng.standard_normal((M, D), dtype=cp.float32) + 2).astype(cp.float16)
    dy = rng.standard_normal((M, D), dtype=cp.float32).astype(cp.float16)
    y, cache = api.layer_norm_forward(x)
    dx, _, _ = api.layer_norm_backward(dy, cache)
    rows = [0, M // 2, M - 1]
    xs, dys = cp.asnumpy(x[rows]), cp.asnumpy(dy[rows])
    ry, rdx, _, _ = layer_norm_longdouble(xs, None, None, 1e-5, dys)
    assert max_rel_error(cp.asnumpy(y[rows]), ry) < TOL["float16"][0]
    assert max_rel_error(cp.asnumpy(dx[rows]), rdx) < TOL["float16"][1]
    del x, dy, y, dx, cache


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: api.layer_norm_forward(np.ones((2, 4), np.float32)), TypeError, r"^x must be a cupy"),
        (lambda: api.layer_norm_forward(cp.ones((2, 4), cp.int32)), TypeError, r"^x must be a CuPy array of float32"),
        (lambda: api.layer_norm_forward(cp.ones((2, 4), cp.float64)), TypeError, r"^x "),
        (lambda: api.layer_norm_forward(cp.ones((), cp.float32)), ValueError, r"^x must have at least one axis"),
        (lambda: api.layer_norm_forward(cp.ones((2, 0), cp.float32)), ValueError, r"^x must have D"),
        (lambda: api.layer_norm_forward(cp.ones((2, 4), cp.float32), cp.ones(5, cp.float32)), ValueError, r"^gamma must have shape"),
        (lambda: api.layer_norm_forward(cp.ones((2, 4), cp.float32), None, cp.ones(4, cp.float16)), TypeError, r"^beta must have x's dtype"),
        (lambda: api.layer_norm_forward(cp.ones((2, 4), cp.float32), eps=0.0), ValueError, r"^eps "),
        (lambda: api.layer_norm_backward(cp.ones((2, 4), cp.float32), (1, 2)), TypeError, r"^cache must be"),
    ],
)
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_bad_dy():
    x = cp.ones((2, 4), cp.float32) + cp.arange(4, dtype=cp.float32)
    _, cache = api.layer_norm_forward(x)
    with pytest.raises(ValueError, match=r"^dy must have the shape of y"):
        api.layer_norm_backward(cp.ones((2, 5), cp.float32), cache)
    with pytest.raises(TypeError, match=r"^dy must be a cupy array of dtype float32"):
        api.layer_norm_backward(cp.ones((2, 4), cp.float16), cache)


@pytest.mark.skipif(torch is None or not (torch and torch.cuda.is_available()), reason="needs CUDA torch")
def test_torch_in_place_modification_is_refused():
    x = torch.randn(4, 8, device="cuda")
    _, cache = api.layer_norm_forward(x)
    x.mul_(2)
    with pytest.raises(ValueError, match="modified in place"):
        api.layer_norm_backward(torch.randn(4, 8, device="cuda"), cache)


# chapter 10's kernels (versions.cu), each against long double; D not a multiple of 4 included (v3 and
# v4 refuse those, and rows longer than their registers hold, with a ValueError)
VERSION_SHAPES = [(5, 1), (7, 3), (33, 7), (9, 100), (64, 256), (3, 1000), (130, 1024), (5, 1030), (4, 4096),
                  (3, 5001), (3, 8192), (2, 16384), (2, 20000)]


@pytest.mark.parametrize("M,D", VERSION_SHAPES)
def test_versions_against_long_double(poisoned, M, D):
    from lnlib.cuda import versions

    rng = np.random.default_rng(D)
    x, gamma, beta, dy = _case(rng, M, D, 0.5)
    ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    xg, gg, bg, dyg = (cp.asarray(a) for a in (x, gamma, beta, dy))
    ran = []
    for v in versions.FORWARD + versions.BACKWARD:
        try:
            versions.launch_config(v, D)
        except ValueError:
            continue
        ran.append(v)
        if v in versions.FORWARD:
            y, mean, rstd = versions.forward(v, xg, gg, bg)
            assert max_rel_error(cp.asnumpy(y), ry) < TOL["float32"][0], v
            x64 = x.astype(np.float64)
            want_mean = x64.mean(1) - (x64[:, 0] if v == "v4" else 0)
            assert np.allclose(cp.asnumpy(mean), want_mean, rtol=1e-5, atol=1e-5), v
            assert np.allclose(cp.asnumpy(rstd), 1 / np.sqrt(x64.var(1) + 1e-5), rtol=1e-5), v
        else:
            dx, dgamma, dbeta = versions.gradients(v, dyg, xg, gg, bg)
            errs = [max_rel_error(cp.asnumpy(a), r) for a, r in ((dx, rdx), (dgamma, rdg), (dbeta, rdb))]
            if D <= 2:  # dx is exactly 0 (D = 1) or an eps effect (D = 2): only the parameters
                errs[0] = 0.0
            assert max(errs) < TOL["float32"][1], (v, errs)
    assert {"v0", "v1", "b0"} <= set(ran)
    assert ("v2" in ran) == (D <= 16384) and ("b1" in ran) == (D <= 8192)
    assert ("v3" in ran) == ("v4" in ran) == (D <= 16384 and D % 4 == 0)


def test_versions_tutorial_reduction_is_wrong():
    from lnlib.cuda import versions

    rng = np.random.default_rng(4)
    x, gamma, beta, _ = (cp.asarray(a) for a in _case(rng, 64, 1024, 0.5))
    ry = layer_norm_longdouble(cp.asnumpy(x), cp.asnumpy(gamma), cp.asnumpy(beta))
    broken = cp.asnumpy(versions.forward("v0", x, gamma, beta, broken=True)[0])
    assert max_rel_error(broken, ry) > 0.1  # 256 threads, 8 warps: 7 of them dropped
    with pytest.raises(ValueError, match="v0 only"):
        versions.forward("v1", x, gamma, beta, broken=True)


def test_versions_shift_keeps_digits():
    # what chapter 10 says versions 1-3 cost and version 4 (and b1 on its statistics) do not:
    # at an offset of 1e4 the one-pass statistics lose every digit, the shifted two-pass ones none
    from lnlib.cuda import versions

    rng = np.random.default_rng(5)
    x, gamma, beta, dy = _case(rng, 64, 1024, 1e4)
    ry, rdx, _, _ = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    xg, gg, bg, dyg = (cp.asarray(a) for a in (x, gamma, beta, dy))
    for v in ("v1", "v2", "v3"):
        y = cp.asnumpy(versions.forward(v, xg, gg, bg)[0])
        assert not np.isfinite(y).all() or max_rel_error(y, ry) > 1e-2, v
    assert max_rel_error(cp.asnumpy(versions.forward("v4", xg, gg, bg)[0]), ry) < TOL["float32"][0]
    assert max_rel_error(cp.asnumpy(versions.gradients("b1", dyg, xg, gg, bg)[0]), rdx) < TOL["float32"][1]


def test_versions_b1_is_bitwise_deterministic():
    from lnlib.cuda import versions

    rng = np.random.default_rng(6)
    for M, D in [(4099, 256), (1000, 4096), (300, 8192)]:
        x, gamma, beta, dy = (cp.asarray(a) for a in _case(rng, M, D, 1.0))
        _, mean, rstd = versions.forward("v4", x, gamma, beta)
        runs = [versions.backward("b1", dy, x, gamma, mean, rstd) for _ in range(3)]
        for r in runs[1:]:
            for a, b in zip(runs[0], r):
                assert cp.asnumpy(a).tobytes() == cp.asnumpy(b).tobytes()


def test_versions_bad_arguments():
    from lnlib.cuda import versions

    x = cp.ones((2, 8), cp.float32)
    with pytest.raises(TypeError, match="^x must be"):
        versions.forward("v1", x.astype(cp.float16), x[0], x[0])
    with pytest.raises(TypeError, match="^gamma, beta"):
        versions.forward("v1", x, x[0, :4], x[0])
    with pytest.raises(ValueError, match="divisible by 4"):
        versions.forward("v3", cp.ones((2, 6), cp.float32), x[0, :6], x[0, :6])


# ---- inputs as readers have them, and other GPUs' layouts (issue: lnlib.cuda on every GPU) ----------


def _check_torch(x, gamma, beta, dy, dtype):
    """lnlib.cuda on torch tensors (any view) against long double on the same values."""
    y, cache = api.layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = api.layer_norm_backward(dy, cache)
    to64 = lambda t: None if t is None else t.float().cpu().numpy().astype(np.float64)
    ry, rdx, rdg, rdb = layer_norm_longdouble(to64(x), to64(gamma), to64(beta), 1e-5, to64(dy))
    ty, tg = TOL[dtype]
    assert max_rel_error(to64(y), ry) < ty and max_rel_error(to64(dx), rdx) < tg
    for got, exact in ((dgamma, rdg), (dbeta, rdb)):
        assert (got is None) == (exact is None)
        if got is not None:
            assert max_rel_error(to64(got), exact) < tg * np.sqrt(x.numel() / x.shape[-1])


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("D", [256, 1000, 4096])
def test_misaligned_offset_and_non_contiguous_views(dtype, D):
    dt = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(D)
    base = torch.randn(40 * (D + 3) + 1, device="cuda", generator=g).to(dt)
    # a view that starts one element in: not 16-byte aligned, so the scalar layout must be used
    x = base[1:1 + 40 * D].view(40, D)
    dy = torch.randn(40, D, device="cuda", generator=g).to(dt)
    gamma = torch.randn(D + 1, device="cuda", generator=g).to(dt)[1:]
    beta = torch.randn(D, device="cuda", generator=g).to(dt)
    _check_torch(x, gamma, beta, dy, dtype)
    # non-contiguous: every other row of a wider tensor, and a transposed copy's transpose
    wide = torch.randn(80, D, device="cuda", generator=g).to(dt)
    _check_torch(wide[::2], gamma, beta, dy, dtype)
    _check_torch(x.t().contiguous().t(), gamma, beta, dy, dtype)


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
@pytest.mark.parametrize("which", ["gamma only", "beta only"])
def test_gamma_without_beta_and_beta_without_gamma(which):
    g = torch.Generator(device="cuda").manual_seed(7)
    x = torch.randn(64, 768, device="cuda", generator=g)
    dy = torch.randn(64, 768, device="cuda", generator=g)
    p = torch.randn(768, device="cuda", generator=g)
    gamma, beta = (p, None) if which == "gamma only" else (None, p)
    _check_torch(x, gamma, beta, dy, "float32")


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("D", [1024, 16384, 65536])
def test_16_bit_with_rows_enough_for_persistent_and_cluster_kernels_to_loop(dtype, D):
    # enough rows that the persistent backward grid and the cluster grids walk several rows per block
    limits = api.K.device_limits(torch.cuda.current_device())
    M = 4 * limits.sm_count * 32
    M = max(M, 8 * limits.sm_count) if D >= 16384 else M
    dt = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(D)
    x = (3 + torch.randn(M, D, device="cuda", generator=g)).to(dt)
    dy = torch.randn(M, D, device="cuda", generator=g).to(dt)
    gamma = (1 + 0.5 * torch.randn(D, device="cuda", generator=g)).to(dt)
    beta = torch.randn(D, device="cuda", generator=g).to(dt)
    _check_torch(x, gamma, beta, dy, dtype)


@pytest.mark.parametrize("cc", [70, 75, 80, 86, 89])
@pytest.mark.parametrize("backward", [False, True])
def test_other_architectures_layouts_under_their_shared_memory_limit(poisoned, cc, backward):
    # On this GPU, run the layouts the chooser picks for another architecture's limits, with the
    # dynamic shared memory each may use capped at that architecture's opt-in limit: what a T4, an
    # A100 or an L4 would run (the code is compiled for this GPU, so registers may differ slightly).
    here = api.K.device_limits(cp.cuda.Device().id)
    other = api.K.limits_for(cc)
    if other.smem_per_block_optin > here.smem_per_block_optin:
        pytest.skip(f"sm_{cc} allows more shared memory per block than this GPU")
    rng = np.random.default_rng(cc)
    for D in (256, 1000, 4096, 8192, 16384, 65536):
        cfg = api.K.choose(D, "float32", backward, limits=other)
        if backward:
            assert api.K.acc_smem_bytes(cfg, D) + api.K.STATIC_SMEM_RESERVE <= other.smem_per_block_optin
        x, gamma, beta, dy = _case(rng, 64, D, 100.0)
        xg, gg, bg, dyg = (cp.asarray(a) for a in (x, gamma, beta, dy))
        y, cache = api.layer_norm_forward(xg, gg, bg, _config=None if backward else cfg)
        got = [y]
        if backward:
            got += list(api.layer_norm_backward(dyg, cache, _config=cfg))
        ry, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
        ty, tg = TOL["float32"]
        assert max_rel_error(cp.asnumpy(got[0]), ry) < ty, (cc, D, cfg)
        if backward:
            for a, e in zip(got[1:], (rdx, rdg, rdb)):
                assert max_rel_error(cp.asnumpy(a), e) < tg * 8, (cc, D, cfg)


def test_a_refused_launch_falls_back_with_one_warning(monkeypatch):
    # a device that refuses the chosen kernel (as a GPU with too little shared memory would) gets the
    # looped kernel and one RuntimeWarning, and still the right answer
    rng = np.random.default_rng(11)
    x, gamma, beta, dy = _case(rng, 16, 4096, 10.0)
    xg, gg, bg, dyg = (cp.asarray(a) for a in (x, gamma, beta, dy))
    _, cache = api.layer_norm_forward(xg, gg, bg)
    cfg = api.K.choose(4096, "float32", True, limits=api.K.device_limits(cp.cuda.Device().id))
    name = api.K.backward_name("float32", cfg)
    real = api.K.get_kernel

    class Refusing:
        max_dynamic_shared_size_bytes = 1 << 30
        num_regs = real(name).num_regs

        def __call__(self, *args, **kwargs):
            raise cp.cuda.driver.CUDADriverError(1)  # CUDA_ERROR_INVALID_VALUE

    monkeypatch.setattr(api.K, "get_kernel", lambda n, *a: Refusing() if n == name else real(n, *a))
    api._warned.discard(name)
    with pytest.warns(RuntimeWarning, match="refused"):
        dx, dgamma, dbeta = api.layer_norm_backward(dyg, cache)
    _, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    for a, e in zip((dx, dgamma, dbeta), (rdx, rdg, rdb)):
        assert max_rel_error(cp.asnumpy(a), e) < 1e-4
