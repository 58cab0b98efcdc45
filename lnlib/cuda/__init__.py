"""LayerNorm on the GPU with fused CUDA kernels, called through CuPy.

The same contract as :mod:`lnlib` on the CPU, for CuPy arrays (float32, float16) and CUDA torch
tensors (float32, float16, bfloat16)::

    from lnlib import cuda
    y, cache = cuda.layer_norm_forward(x, gamma, beta, eps=1e-5)
    dx, dgamma, dbeta = cuda.layer_norm_backward(dy, cache)

The kernels' source is ``layernorm.cu`` beside this file (and ``versions.cu``, the short kernels of
the book's chapter 10, one idea each, which ``versions`` launches and registers); ``families``
describes every kernel's template parameters and arguments, from which names and launch arguments
are derived; ``limits`` holds every limit and tolerance; ``kernels`` chooses a layout for each row
length from the device's limits, ``api`` launches, ``nvrtc`` compiles and inspects the kernels
without a GPU, ``timing`` measures them on one. Importing this module needs neither CuPy nor a GPU;
calling it needs both.
"""

from .api import LayerNormCudaCache, is_available, layer_norm_backward, layer_norm_forward

__all__ = ["LayerNormCudaCache", "is_available", "layer_norm_forward", "layer_norm_backward"]
