r"""LayerNorm for PyTorch backed by lnlib: a drop-in ``torch.nn.LayerNorm``, with autograd.

``LayerNorm`` has the parameters, ``state_dict`` keys and call signature of ``torch.nn.LayerNorm``,
and ``layer_norm`` those of ``torch.nn.functional.layer_norm``. Both normalise over the trailing
``normalized_shape`` dimensions (flattened into one row of ``D`` features) and differentiate through
a ``torch.autograd.Function`` whose forward and backward are lnlib's:

- CPU tensors (float16, float32, float64) run :func:`lnlib.layer_norm_forward` and
  :func:`lnlib.layer_norm_backward`, so lnlib's accuracy contract holds: float32 results within
  about 2e-6 of the exact answer whatever the rows' offset. bfloat16 CPU tensors, which NumPy cannot
  hold, are computed in float32 and rounded once.
- CUDA tensors (float32, float16, bfloat16) run the fused kernels of :mod:`lnlib.cuda`.

Differences from PyTorch, on purpose: ``eps`` must be finite and positive (PyTorch also accepts a
negative one), and bad input raises lnlib's TypeError/ValueError naming the argument. Second
derivatives are not supported (the backward is not itself differentiable).

Examples
--------
>>> import torch
>>> from lnlib.torch import LayerNorm
>>> ln = LayerNorm(8, dtype=torch.float64)
>>> x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
>>> y = ln(x)
>>> y.shape, sorted(ln.state_dict())
(torch.Size([2, 3, 8]), ['bias', 'weight'])
>>> y.backward(torch.randn_like(y))
>>> x.grad.shape, ln.weight.grad.shape
(torch.Size([2, 3, 8]), torch.Size([8]))
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from . import layernorm
from ._validate import check_eps

__all__ = ["LayerNorm", "layer_norm"]

_CPU_DTYPES = (torch.float16, torch.float32, torch.float64, torch.bfloat16)
_CUDA_DTYPES = (torch.float16, torch.float32, torch.bfloat16)


def _normalized_shape(normalized_shape) -> tuple[int, ...]:
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    try:  # read once: a generator would be empty the second time
        sizes = None if isinstance(normalized_shape, (str, bytes)) else list(normalized_shape)
    except TypeError:  # not iterable
        sizes = None
    if sizes is None or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
    shape = tuple(int(n) for n in sizes)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"normalized_shape must be non-empty with every size >= 1, got {shape}")
    return shape


def _check_input(input, shape: tuple[int, ...]) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    allowed = _CUDA_DTYPES if input.is_cuda else _CPU_DTYPES
    if input.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"input must have dtype {names} on {input.device.type}, got {input.dtype}")
    if tuple(input.shape[input.dim() - len(shape):]) != shape or input.dim() < len(shape):
        raise ValueError(
            f"input's trailing dimensions must equal normalized_shape {shape}; got input of shape "
            f"{tuple(input.shape)}"
        )


def _check_param(name: str, p, input, shape) -> None:
    if p is None:
        return
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(p).__name__}")
    if tuple(p.shape) != shape:
        raise ValueError(f"{name} must have shape normalized_shape = {shape}, got {tuple(p.shape)}")
    if p.dtype != input.dtype or p.device != input.device:
        raise TypeError(
            f"{name} must have input's dtype and device ({input.dtype}, {input.device}), "
            f"got ({p.dtype}, {p.device})"
        )


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: float32 holds every bfloat16 exactly
        t = t.float()
    return t.contiguous().numpy()


def _from_numpy(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(a).to(like.dtype)  # bfloat16: one rounding of the float32 result


class _LayerNormFunction(torch.autograd.Function):
    """y = LayerNorm(x) over the last axis of a (M, D) view, with lnlib's backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        if x.is_cuda:
            from .cuda import api

            y, cache = api.layer_norm_forward(x.contiguous(), weight, bias, eps)
        else:
            w = None if weight is None else _to_numpy(weight)
            b = None if bias is None else _to_numpy(bias)
            y_np, cache = layernorm.layer_norm_forward(_to_numpy(x), w, b, eps)
            y = _from_numpy(y_np, x)
        ctx.cache = cache
        ctx.like = x
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        cache, like = ctx.cache, ctx.like
        if dy.is_cuda:
            from .cuda import api

            dx, dgamma, dbeta = api.layer_norm_backward(dy.contiguous(), cache)
        else:
            grads = layernorm.layer_norm_backward(_to_numpy(dy).astype(cache.dtype, copy=False), cache)
            dx, dgamma, dbeta = (None if g is None else _from_numpy(g, like) for g in grads)
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        return (dx if need_x else None, dgamma if need_w else None, dbeta if need_b else None, None)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """LayerNorm over the trailing ``normalized_shape`` dimensions, as ``torch.nn.functional.layer_norm``.

    Parameters
    ----------
    input : torch.Tensor, shape (..., *normalized_shape)
        float16, float32, float64 or bfloat16 on the CPU; float16, float32 or bfloat16 on CUDA.
    normalized_shape : int or sequence of int
        The trailing dimensions to normalise over, flattened into one row of ``D = prod`` features.
    weight, bias : torch.Tensor of shape ``normalized_shape``, or None
        Scale (gamma) and shift (beta), of input's dtype and device.
    eps : float
        Added to the variance; finite and positive.

    Returns
    -------
    torch.Tensor
        Of input's shape, dtype and device; differentiable with respect to input, weight and bias.

    Raises
    ------
    TypeError
        If ``input`` is not a tensor of a supported dtype, or ``weight``/``bias`` is not a tensor of
        input's dtype and device.
    ValueError
        If the trailing dimensions of ``input`` or the shape of ``weight``/``bias`` differ from
        ``normalized_shape``, or ``eps`` is not finite and positive.

    Notes
    -----
    Per row of ``D`` features, :math:`y = \\gamma\\,(x-\\mu)/\\sqrt{\\sigma^2+\\varepsilon} + \\beta`
    (the book's equations); the backward is :math:`dx = \\mathrm{rstd}\\,(g - \\bar g - \\hat x\\,\\overline{g\\hat x})`
    with :math:`g = \\gamma\\,dy`.

    Examples
    --------
    >>> import torch
    >>> from lnlib.torch import layer_norm
    >>> x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    >>> layer_norm(x, 4).round(decimals=4)
    tensor([[-1.3416, -0.4472,  0.4472,  1.3416]], dtype=torch.float64)
    """
    shape = _normalized_shape(normalized_shape)
    _check_input(input, shape)
    _check_param("weight", weight, input, shape)
    _check_param("bias", bias, input, shape)
    eps = check_eps(eps)
    D = math.prod(shape)
    lead = tuple(input.shape[: input.dim() - len(shape)])
    x2 = input.reshape(*lead, D)
    w = None if weight is None else weight.reshape(D)
    b = None if bias is None else bias.reshape(D)
    return _LayerNormFunction.apply(x2, w, b, eps).reshape(input.shape)


class LayerNorm(torch.nn.Module):
    """A drop-in for ``torch.nn.LayerNorm`` computed by lnlib (same arguments, parameters, state_dict).

    Parameters
    ----------
    normalized_shape : int or sequence of int
        The trailing dimensions to normalise over.
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learnable ``weight`` (initialised to ones) and, if ``bias``, ``bias`` (zeros).
    bias : bool, default True
    device, dtype : optional
        Where and in which dtype the parameters are created, as in PyTorch.

    Examples
    --------
    >>> import torch
    >>> from lnlib.torch import LayerNorm
    >>> theirs = torch.nn.LayerNorm((3, 4))
    >>> ours = LayerNorm((3, 4))
    >>> _ = ours.load_state_dict(theirs.state_dict())
    >>> x = torch.randn(2, 3, 4)
    >>> bool(torch.allclose(ours(x), theirs(x), atol=1e-6))
    True
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _normalized_shape(normalized_shape)
        self.eps = check_eps(eps)
        self.elementwise_affine = bool(elementwise_affine)
        factory = {"device": device, "dtype": dtype}
        if self.elementwise_affine:
            self.weight = torch.nn.Parameter(torch.ones(self.normalized_shape, **factory))
            if bias:
                self.bias = torch.nn.Parameter(torch.zeros(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Ones for ``weight`` and zeros for ``bias``, as ``torch.nn.LayerNorm`` initialises them."""
        if self.weight is not None:
            torch.nn.init.ones_(self.weight)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
