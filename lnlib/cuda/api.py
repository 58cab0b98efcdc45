"""lnlib.cuda's public functions: argument checks, CuPy/PyTorch adaptation and launches."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

from .._validate import check_eps
from . import kernels as K
from . import limits as L

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
    """The device pointer of a _Tensor (None: a null pointer), for a kernel's pointer argument."""
    return None if t is None else t.ptr


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
def _num_regs(instance) -> int:
    return max(1, K.kernel_of(instance).num_regs)


def persistent_grid(instance, threads: int, smem: int, device: int) -> int:
    """As many blocks of ``instance`` (a :class:`~lnlib.cuda.families.Instance`) as the GPU holds at
    once, by threads, registers and shared memory."""
    limits = K.device_limits(device)
    return limits.sm_count * limits.resident_blocks(threads, _num_regs(instance), smem)


def _looped_grid(M: int, device: int) -> int:
    return min(M, _sm_count(device) * L.LOOPED_BLOCKS_PER_SM)


def layer_norm_forward(x, gamma=None, beta=None, eps=1e-5, *, _config=None, _kernel=None, _grid=None):
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

    The private keywords are for the benchmarks: ``_config`` a layout (:class:`~lnlib.cuda.kernels.RowConfig`)
    instead of the chosen one; ``_kernel`` an :class:`~lnlib.cuda.families.Instance` to launch instead of
    the production kernel of that layout (an experiment of ``benchmarks/experiments/``, which must take
    the same arguments); ``_grid`` the number of blocks instead of one block (or cluster) per row group.
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
    if M > L.MAX_ROWS or D > L.INT_MAX:  # the kernels count rows and columns in 32-bit ints
        raise ValueError(f"x must have at most {L.MAX_ROWS} rows and D < 2**31 for lnlib.cuda; got shape {xt.shape}")
    import cupy

    # allocate on x's device (CuPy allocates on the current one) and launch there
    with cupy.cuda.Device(xt.device):
        y = _empty(xt, xt.shape)
        mean_shift = _empty(xt, (M,), "float32")
        rstd = _empty(xt, (M,), "float32")
        if M > 0:
            aligned = all(t is None or t.ptr % L.VECTOR_BYTES == 0 for t in (xt, gt, bt, y))
            cfg = _config or K.choose(D, xt.dtype, False, aligned=aligned, limits=K.device_limits(xt.device))
            inst = _kernel or K.forward_instance(xt.dtype, cfg)
            kernel = K.kernel_of(inst)
            if cfg.kind == "looped":
                grid = _looped_grid(M, xt.device)
            else:  # one block (or cluster) per group of rows: the block scheduler overlaps their phases
                grid = min(K.forward_groups(M, cfg.RPB), L.INT_MAX // cfg.C) * cfg.C
            grid = _grid or grid
            # every forward family takes the same arguments (tests/test_kernel_registry.py checks it)
            args = dict(x=_p(xt), gamma=_p(gt), beta=_p(bt), y=_p(y), mean_shift=_p(mean_shift), rstd=_p(rstd),
                        M=M, D=D, eps=eps)
            looped = K.forward_instance(xt.dtype, K.RowConfig("looped"))
            _launch(lambda: kernel((grid,), (cfg.threads,), inst.family.launch_args(**args), stream=_stream(xt)),
                    inst.name,
                    lambda: K.kernel_of(looped)((_looped_grid(M, xt.device),), (L.LOOPED_THREADS,),
                                                looped.family.launch_args(**args), stream=_stream(xt)))
    version = int(xt.obj._version) if xt.kind == "torch" else None
    cache = LayerNormCudaCache(xt.obj, None if gt is None else gt.obj, mean_shift.obj, rstd.obj, bt is not None, version)
    return y.obj, cache


def layer_norm_backward(dy, cache, *, _config=None, _kernel=None):
    """Gradients on the GPU: ``(dx, dgamma, dbeta)``, as :func:`lnlib.layer_norm_backward`.

    One fused pass over x and dy per row (x_hat recomputed), dgamma and dbeta accumulated per block
    and summed in a fixed order by a second small kernel: bit-identical from run to run.

    Raises
    ------
    TypeError
        If ``cache`` is not a LayerNormCudaCache or ``dy`` is not a device array of x's kind and dtype.
    ValueError
        If ``dy`` does not have y's shape, or (torch) x was modified in place after the forward.

    ``_config`` and ``_kernel`` are for the benchmarks, as in :func:`layer_norm_forward`.
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
        aligned = all(t is None or t.ptr % L.VECTOR_BYTES == 0 for t in (xt, dyt, gt, dx))
        cfg = _config or K.choose(D, xt.dtype, True, aligned=aligned, limits=K.device_limits(xt.device))
        inst = _kernel or K.backward_instance(xt.dtype, cfg)
        kernel = K.kernel_of(inst)
        tile = L.PARAM_TILE

        def looped_backward():
            looped = K.backward_instance(xt.dtype, K.RowConfig("looped"))
            K.kernel_of(looped)((_looped_grid(M, xt.device),), (L.LOOPED_THREADS,), looped.family.launch_args(
                x=_p(xt), dy=_p(dyt), gamma=_p(gt), mean_shift=_p(ms), rstd=_p(rs), dx=_p(dx), M=M, D=D), stream=stream)
            if not want:
                return None
            P = min(L.MAX_PARAM_PARTS, math.ceil(M / tile))
            part = _empty(xt, (2, P, D), "float32")
            params = K.params_looped_instance(xt.dtype)
            K.kernel_of(params)((math.ceil(D / tile), P), (tile, tile), params.family.launch_args(
                x=_p(xt), dy=_p(dyt), mean_shift=_p(ms), rstd=_p(rs), part_dgamma=part.ptr,
                part_dbeta=part.ptr + 4 * P * D, M=M, D=D), stream=stream)
            return part, P

        if cfg.kind == "looped":
            part, P = looped_backward() or (None, 0)
        else:
            smem = K.acc_smem_bytes(cfg, D) if want else 0
            grid = persistent_grid(inst, cfg.threads, smem, xt.device)
            grid = (grid // cfg.C) * cfg.C
            rows_per_pass = (grid // cfg.C) * cfg.RPB
            if rows_per_pass > M:  # no more groups than rows
                grid = max(1, math.ceil(M / cfg.RPB)) * cfg.C
            P = grid // cfg.C
            part = _empty(xt, (2, P, D), "float32") if want else None
            fallback = {}

            def refused():
                fallback["part"] = looped_backward() or (None, 0)

            # every row and cluster backward family takes the same arguments (test_kernel_registry.py)
            args = inst.family.launch_args(x=_p(xt), dy=_p(dyt), gamma=_p(gt), mean_shift=_p(ms), rstd=_p(rs),
                                           dx=_p(dx), part_dgamma=_p(part),
                                           part_dbeta=part.ptr + 4 * P * D if want else None, M=M, D=D)

            def run():
                if smem > L.DEFAULT_DYNAMIC_SMEM and kernel.max_dynamic_shared_size_bytes < smem:
                    kernel.max_dynamic_shared_size_bytes = smem  # refused where a block may not have it
                kernel((grid,), (cfg.threads,), args, stream=stream, shared_mem=smem)

            _launch(run, inst.name, refused)
            if fallback:
                part, P = fallback["part"]
        if want:
            col_sum = K.col_sum_instance(xt.dtype)
            for t, i in ((dgamma, 0), (dbeta, 1)):
                if t is not None:
                    K.kernel_of(col_sum)((math.ceil(D / tile),), (tile, tile), col_sum.family.launch_args(
                        part=part.ptr + 4 * i * P * D, P=P, D=D, out=_p(t)), stream=stream)
    return dx.obj, None if dgamma is None else dgamma.obj, None if dbeta is None else dbeta.obj
