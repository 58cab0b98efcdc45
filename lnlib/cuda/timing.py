"""Measuring GPU LayerNorm honestly: CUDA-event timing, the copy line, a float64 check, a quick run.

``benchmarks/gpu.py`` (the recorded benchmark) and the GPU chapter's live section share these.
Everything here needs CuPy and a GPU.
"""

from __future__ import annotations

import statistics

from .limits import ITEMSIZE, TOL

__all__ = ["min_bytes", "warm_up", "random_inputs", "time_ms", "copy_gbps", "reference64", "rel_err", "quick_benchmark"]

EPS = 1e-5


def min_bytes(M: int, D: int, itemsize: int, backward: bool) -> int:
    """The fewest bytes a pass over M rows of D elements must move, the numerator of every GB/s here.

    Forward: read x, write y (2MDs), the saved mean and rstd (8 bytes a row), gamma and beta (2Ds).
    Backward: read x and dy, write dx (3MDs), the statistics, gamma, and write dgamma and dbeta (3Ds).
    """
    k = 3 if backward else 2
    return k * M * D * itemsize + 8 * M + k * D * itemsize


def warm_up():
    """A few hundred milliseconds of GPU work, so that a first measurement is not taken at idle clocks."""
    import cupy as cp

    warm = cp.random.standard_normal((1 << 27,), dtype=cp.float32)
    for _ in range(20):
        warm *= 1.0001
    del warm


def random_inputs(M: int, D: int, seed: int):
    """float32 CuPy ``(x, gamma, beta, dy)``: x of mean 1.5 and spread 2, gamma about 1, the benchmark's data."""
    import cupy as cp

    rng = cp.random.default_rng(seed)
    x = (rng.standard_normal((M, D), dtype=cp.float32) * 2 + 1.5).astype(cp.float32)
    gamma = (1 + 0.5 * rng.standard_normal(D, dtype=cp.float32)).astype(cp.float32)
    beta = rng.standard_normal(D, dtype=cp.float32)
    dy = rng.standard_normal((M, D), dtype=cp.float32)
    return x, gamma, beta, dy


def time_ms(fn, warmup: int = 5, reps: int = 15, inner: int = 10) -> float:
    """Milliseconds per call of ``fn()``: CUDA events around ``inner`` back-to-back calls, median of ``reps``.

    Calls are enqueued back to back, as in a training step, so the GPU time is measured and not the
    Python time between launches (which, with one call per event pair, would be counted as GPU time).
    The events are recorded on CuPy's current stream; ``fn`` must launch on it (lnlib does, and so
    does PyTorch while both use the default stream).
    """
    import cupy as cp

    for _ in range(warmup):
        fn()
    stream = cp.cuda.get_current_stream()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record(stream)
        for _ in range(inner):
            fn()
        b.record(stream)
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b) / inner)
    return statistics.median(times)


def copy_gbps(nbytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus written: the 100% line."""
    import cupy as cp

    src = cp.empty(nbytes // 4, cp.float32)
    src[...] = 1.0
    dst = cp.empty_like(src)
    stream = cp.cuda.get_current_stream()

    def run():
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes, cp.cuda.runtime.memcpyDeviceToDevice, stream.ptr)

    ms = time_ms(run, warmup=10, reps=15)
    del src, dst
    return 2 * nbytes / (ms * 1e-3) / 1e9


def reference64(x, gamma, beta, dy, eps: float = EPS):
    """float64 ``(y, dx, dgamma, dbeta)`` on the GPU for CuPy (M, D) arrays, rows shifted by their first element."""
    import cupy as cp

    x64 = x.astype(cp.float64)
    d = x64 - x64[:, :1]
    xc = d - d.mean(1, keepdims=True)
    rstd = 1.0 / cp.sqrt((xc * xc).mean(1, keepdims=True) + eps)
    xh = xc * rstd
    g64, b64, dy64 = gamma.astype(cp.float64), beta.astype(cp.float64), dy.astype(cp.float64)
    y = xh * g64 + b64
    g = dy64 * g64
    dx = rstd * (g - g.mean(1, keepdims=True) - xh * (g * xh).mean(1, keepdims=True))
    return y, dx, (dy64 * xh).sum(0), dy64.sum(0)


def rel_err(a, ref) -> float:
    """max |a - ref| / max |ref|, on the GPU."""
    import cupy as cp

    a = cp.asarray(a).astype(cp.float64)
    return float(cp.max(cp.abs(a - ref)) / cp.max(cp.abs(ref)))


def quick_benchmark(Ds=(1024, 4096, 16384), mib: int = 64, with_torch: bool = True, seed: int = 0) -> dict:
    """A short live run on this GPU: lnlib (and PyTorch eager, if CUDA PyTorch is installed), float32.

    Each shape has an x of ``mib`` MiB; every output is checked against :func:`reference64` before it
    is timed with :func:`time_ms`; bandwidth counts :func:`min_bytes`, as ``benchmarks/gpu.py`` does,
    against :func:`copy_gbps` measured in the same run.

    Returns
    -------
    dict
        ``{"device", "copy_gbps", "rows": [{"impl", "pass", "rows", "cols", "gbps", "percent_of_copy",
        "max_rel_error"}]}``

    Raises
    ------
    ValueError
        If an implementation's result is further from the float64 reference than
        :data:`lnlib.cuda.limits.TOL` allows float32 (y, or the gradients).
    """
    import cupy as cp

    from . import api

    torch = None
    if with_torch:
        try:
            import torch as _torch

            torch = _torch if _torch.cuda.is_available() else None
        except ImportError:
            pass
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    copy = copy_gbps(1 << 30)
    rows = []
    for D in Ds:
        M = max(1, (mib << 20) // (ITEMSIZE["float32"] * D))
        x, gamma, beta, dy = random_inputs(M, D, seed + D)
        ref = reference64(x, gamma, beta, dy)
        impls = {}
        _, cache = api.layer_norm_forward(x, gamma, beta, EPS)
        impls["lnlib"] = (lambda: api.layer_norm_forward(x, gamma, beta, EPS)[0],
                          lambda: api.layer_norm_backward(dy, cache))
        if torch is not None:
            xt, gt, bt, dyt = (torch.from_dlpack(a) for a in (x, gamma, beta, dy))
            yt, mt, rt = torch.ops.aten.native_layer_norm(xt, [D], gt, bt, EPS)
            impls["torch"] = (lambda: torch.ops.aten.native_layer_norm(xt, [D], gt, bt, EPS)[0],
                              lambda: torch.ops.aten.native_layer_norm_backward(dyt, xt, [D], mt, rt, gt, bt,
                                                                                [True, True, True]))
        for impl, (fwd, bwd) in impls.items():
            for pas, fn in (("forward", fwd), ("backward", bwd)):
                out = fn()
                outs = (out,) if pas == "forward" else tuple(out)
                refs = ref[:1] if pas == "forward" else ref[1:]
                err = max(rel_err(cp.from_dlpack(o) if torch is not None and isinstance(o, torch.Tensor) else o, r)
                          for o, r in zip(outs, refs))
                if not err < TOL["float32"][pas == "backward"]:
                    raise ValueError(f"{impl} {pas} at D = {D} is {err:.1e} from the float64 reference")
                ms = time_ms(fn, reps=7)
                gbps = min_bytes(M, D, ITEMSIZE["float32"], pas == "backward") / (ms * 1e-3) / 1e9
                rows.append({"impl": impl, "pass": pas, "rows": M, "cols": D, "gbps": gbps,
                             "percent_of_copy": 100 * gbps / copy, "max_rel_error": err})
        del x, dy, ref, cache, impls
        cp.get_default_memory_pool().free_all_blocks()
    return {"device": name, "copy_gbps": copy, "rows": rows}
