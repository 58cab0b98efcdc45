"""lnlib.cuda's public functions: argument checks, CuPy/PyTorch adaptation and launches."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from .._validate import check_eps
from . import kernels as K

__all__ = ["LayerNormCudaCache", "layer_norm_forward", "layer_norm_backward", "is_available"]


def is_available() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device
        return False


class _Tensor(NamedTuple):
    """A device array seen as a raw pointer, whichever library owns it."""

    obj: Any  # the caller's array (kept alive while we use its memory)
    kind: str  # 'cupy' or 'torch'
    dtype: str  # 'float32', 'float16' or 'bfloat16'
    shape: tuple
    ptr: int
    device: int


def _as_tensor(name: str, a, allowed=("float32", "float16", "bfloat16")) -> _Tensor:
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        if not isinstance(a, cupy.ndarray):
            raise TypeError(f"{name} must be a cupy.ndarray or a CUDA torch.Tensor, got {type(a).__name__}")
        dtype = a.dtype.name
        if dtype not in ("float32", "float16") or dtype not in allowed:
            raise TypeError(f"{name} must be a CuPy array of float32 or float16, got {dtype}")
        if not a.flags.c_contiguous:
            a = cupy.ascontiguousarray(a)  # a private copy: the caller's array is never modified
        return _Tensor(a, "cupy", dtype, tuple(a.shape), int(a.data.ptr), a.device.id)
    if mod == "torch":
        import torch

        if not isinstance(a, torch.Tensor) or not a.is_cuda:
            raise TypeError(f"{name} must be a CUDA tensor (or a CuPy array), got a {getattr(a, 'device', '?')} tensor")
        names = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
        if a.dtype not in names or names[a.dtype] not in allowed:
            raise TypeError(f"{name} must be a float32, float16 or bfloat16 tensor, got {a.dtype}")
        if not a.is_contiguous():
            a = a.contiguous()
        return _Tensor(a, "torch", names[a.dtype], tuple(a.shape), int(a.data_ptr()), a.device.index)
    raise TypeError(f"{name} must be a cupy.ndarray or a CUDA torch.Tensor, got {type(a).__name__}")


def _empty(like: _Tensor, shape, dtype: str | None = None) -> _Tensor:
    dtype = dtype or like.dtype
    if like.kind == "cupy":
        import cupy

        a = cupy.empty(shape, dtype=dtype)
        return _Tensor(a, "cupy", dtype, tuple(shape), int(a.data.ptr), a.device.id)
    import torch

    t = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    a = torch.empty(shape, dtype=t, device=like.obj.device)
    return _Tensor(a, "torch", dtype, tuple(shape), int(a.data_ptr()), like.device)


def _stream(t: _Tensor):
    """The stream to launch on: CuPy's current stream, or PyTorch's for torch tensors."""
    import cupy

    if t.kind == "torch":
        import torch

        ts = torch.cuda.current_stream(t.obj.device)
        if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy >= 14
            return cupy.cuda.Stream.from_external(ts)
        return cupy.cuda.ExternalStream(ts.cuda_stream, t.device)
    return cupy.cuda.get_current_stream()


def _cc(device: int) -> int:
    return K.device_limits(device).cc


def _sm_count(device: int) -> int:
    return K.device_limits(device).sm_count  # read once per device (one attribute query each)


_warned: set = set()


def _launch(run, name: str, fallback):
    """Call ``run()`` (which configures and launches kernel ``name``); if the device refuses it (too
    many resources, more shared memory than a block may have), warn once per kernel and call
    ``fallback()`` instead: a layout that needs less, slower, never a wrong result."""
    import cupy

    try:
        run()
    except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as err:
        text = str(err)
        if not any(k in text for k in ("OUT_OF_RESOURCES", "INVALID_VALUE", "too many resources", "invalid argument")):
            raise
        if name not in _warned:
            _warned.add(name)
            import warnings

            warnings.warn(f"lnlib.cuda: the device refused {name} ({text}); using the looped kernel, which needs less",
                          RuntimeWarning, stacklevel=3)
        fallback()


def _p(t):
    return np.uint64(0 if t is None else t.ptr)


class LayerNormCudaCache(NamedTuple):
    """What lnlib.cuda's backward needs: 8 bytes a row besides references to x and gamma.

    Attributes
    ----------
    x, gamma : the forward's input and scale (references, not copies; gamma may be None)
    mean_shift : float32 array (M,)
        mean(x - x[..., 0]) of each row: the row's mean is ``x[..., 0] + mean_shift``. Stored relative
        to the row's first element because float32 cannot hold a mean of 1e6 to better than 0.06.
    rstd : float32 array (M,)
    has_beta : bool
    version : int or None
        For torch inputs, ``x._version`` at the forward: the backward refuses a modified x.
    """

    x: Any
    gamma: Any
    mean_shift: Any
    rstd: Any
    has_beta: bool
    version: int | None


def _check_param(name, p, x: _Tensor):
    if p is None:
        return None
    t = _as_tensor(name, p)
    if t.kind != x.kind:
        raise TypeError(f"{name} must be the same kind of array as x ({x.kind}), got {t.kind}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} must have x's dtype {x.dtype}, got {t.dtype}")
    if t.shape != (x.shape[-1],):
        raise ValueError(f"{name} must have shape (D,) = ({x.shape[-1]},) to match x.shape[-1]; got {t.shape}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    return t


@functools.lru_cache(maxsize=None)
def _num_regs(name: str) -> int:
    return max(1, K.get_kernel(name).num_regs)


def _persistent_grid(name: str, threads: int, smem: int, device: int) -> int:
    """As many blocks as the GPU holds at once, by threads, registers and shared memory."""
    limits = K.device_limits(device)
    return limits.sm_count * limits.resident_blocks(threads, _num_regs(name), smem)


def layer_norm_forward(x, gamma=None, beta=None, eps=1e-5, *, _config=None, _onepass=False):
    """LayerNorm over the last axis on the GPU: the same contract as :func:`lnlib.layer_norm_forward`.

    Parameters
    ----------
    x : cupy.ndarray (float32, float16) or CUDA torch.Tensor (float32, float16, bfloat16), shape (..., D)
        Taken without a copy when C-contiguous (otherwise copied once); never modified.
    gamma, beta : same kind and dtype as x, shape (D,), or None
    eps : float, default 1e-5

    Returns
    -------
    y : same kind, dtype and shape as x
    cache : LayerNormCudaCache

    Raises
    ------
    TypeError, ValueError
        Naming the argument, as on the CPU.

    Notes
    -----
    Statistics in float32 on the row shifted by its first element (exact), two passes over the row
    held in registers; one row per group of threads; rows longer than one block's registers are split
    over a thread-block cluster (sm_90) or looped over. NaN and Inf stay in their row.
    """
    xt = _as_tensor("x", x)
    if len(xt.shape) == 0:
        raise ValueError("x must have at least one axis (shape (..., D)); got a 0-d array")
    D = xt.shape[-1]
    if D == 0:
        raise ValueError(f"x must have D = x.shape[-1] >= 1; got shape {xt.shape}")
    gt = _check_param("gamma", gamma, xt)
    bt = _check_param("beta", beta, xt)
    eps = check_eps(eps)
    M = math.prod(xt.shape[:-1])
    if M > K.MAX_ROWS or D > 2**31 - 1:  # the kernels count rows and columns in 32-bit ints
        raise ValueError(f"x must have at most {K.MAX_ROWS} rows and D < 2**31 for lnlib.cuda; got shape {xt.shape}")
    import cupy

    # allocate on x's device (CuPy allocates on the current one) and launch there
    with cupy.cuda.Device(xt.device):
        y = _empty(xt, xt.shape)
        mean_shift = _empty(xt, (M,), "float32")
        rstd = _empty(xt, (M,), "float32")
        if M > 0:
            aligned = all(t is None or t.ptr % 16 == 0 for t in (xt, gt, bt, y))
            cfg = _config or K.choose(D, xt.dtype, False, aligned=aligned, limits=K.device_limits(xt.device))
            name = K.forward_name(xt.dtype, cfg, _onepass)
            kernel = K.get_kernel(name)
            sms = _sm_count(xt.device)
            if cfg.kind == "looped":
                grid = min(M, sms * 8)
            else:  # one block (or cluster) per group of rows: the block scheduler overlaps their phases
                grid = min(K.forward_groups(M, cfg.RPB), (2**31 - 1) // cfg.C) * cfg.C
                if cfg.blocks_per_sm > 0:  # a persistent grid instead: rows visited with a stride
                    grid = min(grid, max(1, sms * cfg.blocks_per_sm // cfg.C) * cfg.C)
                elif cfg.blocks_per_sm < 0:  # as many blocks as are resident at once
                    resident = _persistent_grid(name, cfg.threads, 0, xt.device)
                    grid = min(grid, max(1, resident // cfg.C) * cfg.C)
            args = (_p(xt), _p(gt), _p(bt), _p(y), _p(mean_shift), _p(rstd), np.int32(M), np.int32(D), np.float32(eps))
            looped = K.forward_name(xt.dtype, K.RowConfig("looped"))
            _launch(lambda: kernel((grid,), (cfg.threads,), args, stream=_stream(xt)), name,
                    lambda: K.get_kernel(looped)((min(M, sms * 8),), (1024,), args, stream=_stream(xt)))
    version = int(xt.obj._version) if xt.kind == "torch" else None
    cache = LayerNormCudaCache(xt.obj, None if gt is None else gt.obj, mean_shift.obj, rstd.obj, bt is not None, version)
    return y.obj, cache


def layer_norm_backward(dy, cache, *, _config=None):
    """Gradients on the GPU: ``(dx, dgamma, dbeta)``, as :func:`lnlib.layer_norm_backward`.

    One fused pass over x and dy per row (x_hat recomputed), dgamma and dbeta accumulated per block
    and summed in a fixed order by a second small kernel: bit-identical from run to run.

    Raises
    ------
    TypeError
        If ``cache`` is not a LayerNormCudaCache or ``dy`` is not a device array of x's kind and dtype.
    ValueError
        If ``dy`` does not have y's shape, or (torch) x was modified in place after the forward.
    """
    if not isinstance(cache, LayerNormCudaCache):
        raise TypeError(f"cache must be the LayerNormCudaCache returned by lnlib.cuda.layer_norm_forward, got {type(cache).__name__}")
    xt = _as_tensor("x", cache.x)
    dyt = _as_tensor("dy", dy)
    if dyt.kind != xt.kind or dyt.dtype != xt.dtype:
        raise TypeError(f"dy must be a {xt.kind} array of dtype {xt.dtype} like x, got {dyt.kind} {dyt.dtype}")
    if dyt.shape != xt.shape:
        raise ValueError(f"dy must have the shape of y, {xt.shape}; got {dyt.shape}")
    if dyt.device != xt.device:
        raise ValueError(f"dy must be on x's device {xt.device}, got {dyt.device}")
    if cache.version is not None and int(cache.x._version) != cache.version:
        raise ValueError("cache: x was modified in place after the forward pass; the gradient would be wrong")
    gt = None if cache.gamma is None else _as_tensor("gamma", cache.gamma)
    D = xt.shape[-1]
    M = math.prod(xt.shape[:-1])
    want = gt is not None or cache.has_beta
    import cupy

    with cupy.cuda.Device(xt.device):
        dx = _empty(xt, xt.shape)
        dgamma = _empty(xt, (D,)) if gt is not None else None
        dbeta = _empty(xt, (D,)) if cache.has_beta else None
        stream = _stream(xt)
        if M == 0:
            for t in (dgamma, dbeta):
                if t is not None:
                    (t.obj.fill_(0) if t.kind == "torch" else t.obj.fill(0))
            return dx.obj, None if dgamma is None else dgamma.obj, None if dbeta is None else dbeta.obj
        ms = _as_tensor("cache", cache.mean_shift, ("float32",))
        rs = _as_tensor("cache", cache.rstd, ("float32",))
        sms = _sm_count(xt.device)
        aligned = all(t is None or t.ptr % 16 == 0 for t in (xt, dyt, gt, dx))
        cfg = _config or K.choose(D, xt.dtype, True, aligned=aligned, limits=K.device_limits(xt.device))
        name = K.backward_name(xt.dtype, cfg)
        kernel = K.get_kernel(name)

        def looped_backward():
            lk = K.get_kernel(K.backward_name(xt.dtype, K.RowConfig("looped")))
            lk((min(M, sms * 8),), (1024,), (_p(xt), _p(dyt), _p(gt), _p(ms), _p(rs), _p(dx), np.int32(M), np.int32(D)),
               stream=stream)
            if not want:
                return None
            P = min(64, math.ceil(M / 32))
            part = _empty(xt, (2, P, D), "float32")
            pk = K.get_kernel(f"ln_bwd_params_looped<{K.CTYPE[xt.dtype]}>")
            pk((math.ceil(D / 32), P), (32, 32),
               (_p(xt), _p(dyt), _p(ms), _p(rs), _p(part), np.uint64(part.ptr + 4 * P * D),
                np.int32(M), np.int32(D)), stream=stream)
            return part, P

        if cfg.kind == "looped":
            part, P = looped_backward() or (None, 0)
        else:
            smem = K.acc_smem_bytes(cfg, D) if want else 0
            grid = _persistent_grid(name, cfg.threads, smem, xt.device)
            grid = (grid // cfg.C) * cfg.C
            rows_per_pass = (grid // cfg.C) * cfg.RPB
            if rows_per_pass > M:  # no more groups than rows
                grid = max(1, math.ceil(M / cfg.RPB)) * cfg.C
            P = grid // cfg.C
            part = _empty(xt, (2, P, D), "float32") if want else None
            fallback = {}

            def refused():
                fallback["part"] = looped_backward() or (None, 0)

            args = (_p(xt), _p(dyt), _p(gt), _p(ms), _p(rs), _p(dx),
                    _p(part), np.uint64(part.ptr + 4 * P * D if want else 0), np.int32(M), np.int32(D))

            def run():
                if smem > 48 * 1024 and kernel.max_dynamic_shared_size_bytes < smem:
                    kernel.max_dynamic_shared_size_bytes = smem  # refused where a block may not have it
                kernel((grid,), (cfg.threads,), args, stream=stream, shared_mem=smem)

            _launch(run, name, refused)
            if fallback:
                part, P = fallback["part"]
        if want:
            ck = K.get_kernel(f"ln_col_sum<{K.CTYPE[xt.dtype]}>")
            for t, i in ((dgamma, 0), (dbeta, 1)):
                if t is not None:
                    ck((math.ceil(D / 32),), (32, 32), (np.uint64(part.ptr + 4 * i * P * D), np.int32(P), np.int32(D), _p(t)),
                       stream=stream)
    return dx.obj, None if dgamma is None else dgamma.obj, None if dbeta is None else dbeta.obj
