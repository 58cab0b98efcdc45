"""lnlib: Layer Normalization, forward and backward, from first principles to a fused GPU kernel.

The public API::

    y, cache = layer_norm_forward(x, gamma=None, beta=None, eps=1e-5)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)

Teaching modules, one idea each: :mod:`lnlib.reference` (the step-by-step version),
:mod:`lnlib.variance` (ways to compute a variance and how they fail), :mod:`lnlib.derivations`
(five derivations of the backward), :mod:`lnlib.symbolic` (the Jacobian in SymPy),
:mod:`lnlib.gradcheck` (finite differences and the complex step) and :mod:`lnlib.oracle`
(high-precision answers the tests trust).
"""

from .layernorm import LayerNormCache, layer_norm_backward, layer_norm_forward

__all__ = ["LayerNormCache", "layer_norm_forward", "layer_norm_backward"]
__version__ = "0.1.0"
