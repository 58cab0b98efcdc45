"""``lnlib.torch``: a ``normalized_shape`` with a size below 1 is a ValueError naming ``normalized_shape``.

``torch.nn.LayerNorm(0)`` and ``torch.nn.functional.layer_norm(x, (0,))`` (torch 2.13) accept an empty
row and return an empty tensor, and a negative size is a RuntimeError. lnlib's contract is ``D >= 1``
(``layer_norm_forward`` refuses D = 0, naming ``x``), and ``lnlib.torch`` checks ``normalized_shape``
first: a 0 or a negative size anywhere in it, in the module's constructor or in the function, is a
ValueError whose message starts with ``normalized_shape`` and shows the shape, before any tensor is
made or looked at. Sizes of 1 are fine.
"""

import re

import pytest
import torch

from lnlib.torch import LayerNorm, layer_norm

BAD = [0, (0,), [0], (3, 0), (0, 3), (2, 0, 4), -1, (4, -2), (-3,)]


def _message(shape):
    return "^" + re.escape(f"normalized_shape must be non-empty with every size >= 1, got {shape}") + "$"


@pytest.mark.parametrize("normalized_shape", BAD, ids=repr)
def test_the_module_refuses_sizes_below_one(normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    with pytest.raises(ValueError, match=_message(shape)):
        LayerNorm(normalized_shape)
    with pytest.raises(ValueError, match=_message(shape)):
        LayerNorm(normalized_shape, elementwise_affine=False)


@pytest.mark.parametrize("normalized_shape", BAD, ids=repr)
def test_the_function_refuses_sizes_below_one(normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    # an input whose trailing dimensions match where they can: the shape check must come first
    trailing = tuple(max(n, 0) for n in shape)
    x = torch.ones((2, *trailing), dtype=torch.float64)
    with pytest.raises(ValueError, match=_message(shape)):
        layer_norm(x, normalized_shape)
    weight = torch.ones(trailing, dtype=torch.float64)
    with pytest.raises(ValueError, match=_message(shape)):
        layer_norm(x, normalized_shape, weight, weight)


@pytest.mark.parametrize("normalized_shape", [1, (1,), (1, 1), (3, 1)], ids=repr)
def test_sizes_of_one_are_fine(normalized_shape):
    module = LayerNorm(normalized_shape, dtype=torch.float64)
    shape = module.normalized_shape
    x = torch.randn((2, *shape), dtype=torch.float64)
    y = module(x)
    theirs = torch.nn.functional.layer_norm(x, shape, module.weight, module.bias)
    # float64 rows of at most 3: each result within a few u64 of exact; 1e-12 is lnlib's documented float64 bound
    assert y.shape == x.shape and torch.allclose(y, theirs, rtol=0, atol=1e-12)
