"""Bad input gets a TypeError or ValueError that names the argument and says what was expected."""

import numpy as np
import pytest

from lnlib import layer_norm_backward, layer_norm_forward

X = np.ones((2, 4))


@pytest.mark.parametrize(
    "x,exc,words",
    [
        ([[1.0, 2.0]], TypeError, "numpy.ndarray"),
        (np.arange(8).reshape(2, 4), TypeError, "int64"),
        (np.ones((2, 4), np.int32), TypeError, "int32"),
        (np.ones((2, 4), np.complex128), TypeError, "complex128"),
        (np.ones((2, 4), bool), TypeError, "bool"),
        (np.array(["a", "b"]), TypeError, "floating"),
        (np.array(1.0), ValueError, "0-d"),
        (np.ones((3, 0)), ValueError, "D = x.shape[-1] >= 1"),
        (3.0, TypeError, "float"),
    ],
)
def test_bad_x(x, exc, words):
    with pytest.raises(exc, match=r"^x ") as info:
        layer_norm_forward(x)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["gamma", "beta"])
@pytest.mark.parametrize(
    "value,exc",
    [
        (np.ones(5), ValueError),
        (np.ones(3), ValueError),
        (np.ones((1, 4)), ValueError),
        (np.ones(()), ValueError),
        (np.ones(4, np.int64), TypeError),
        ([1.0, 1.0, 1.0, 1.0], TypeError),
        (np.ones(4, np.complex64), TypeError),
    ],
)
def test_bad_gamma_beta(name, value, exc):
    with pytest.raises(exc, match=rf"^{name} "):
        layer_norm_forward(X, **{name: value})


@pytest.mark.parametrize(
    "eps,exc",
    [(0.0, ValueError), (-1e-5, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     ("1e-5", TypeError), (None, TypeError), (True, TypeError), (1j, TypeError), (np.array([1e-5]), TypeError)],
)
def test_bad_eps(eps, exc):
    with pytest.raises(exc, match=r"^eps "):
        layer_norm_forward(X, eps=eps)


def test_wrong_shape_message_says_expected():
    with pytest.raises(ValueError, match=r"gamma must have shape \(D,\) = \(4,\).*got \(5,\)"):
        layer_norm_forward(X, gamma=np.ones(5))


@pytest.mark.parametrize(
    "dy,exc,pattern",
    [
        (np.ones((2, 5)), ValueError, r"^dy must have the shape of y, \(2, 4\)"),
        (np.ones((4, 2)), ValueError, r"^dy "),
        (np.ones((8,)), ValueError, r"^dy "),
        # the same last axis (and, for the first, the same rows) in another shape: the whole shape counts
        (np.ones((1, 2, 4)), ValueError, r"^dy must have the shape of y, \(2, 4\)"),
        (np.ones((2, 4), np.int64), TypeError, r"^dy .*int64"),
        (np.ones((2, 4), np.complex128), TypeError, r"^dy "),
        ([[1.0] * 4] * 2, TypeError, r"^dy "),
    ],
)
def test_bad_dy(dy, exc, pattern):
    _, cache = layer_norm_forward(X)
    with pytest.raises(exc, match=pattern):
        layer_norm_backward(dy, cache)


def test_dy_of_one_row_needs_the_row_axis():
    # y of shape (1, 3): a dy of shape (3,) has the same elements and the same last axis, but not y's shape
    _, cache = layer_norm_forward(np.array([[1.0, 2.0, 4.0]]))
    with pytest.raises(ValueError, match=r"^dy must have the shape of y, \(1, 3\)"):
        layer_norm_backward(np.ones(3), cache)


@pytest.mark.parametrize("cache", [None, (X, X, None), {"x_hat": X}])
def test_bad_cache(cache):
    with pytest.raises(TypeError, match=r"^cache must be the LayerNormCache"):
        layer_norm_backward(np.ones((2, 4)), cache)


def test_error_leaves_inputs_alone():
    x = np.arange(8.0).reshape(2, 4)
    before = x.copy()
    with pytest.raises(ValueError):
        layer_norm_forward(x, gamma=np.ones(3))
    np.testing.assert_array_equal(x, before)


def test_the_gpu_api_names_a_host_array_without_a_gpu():
    """lnlib.cuda checks its arguments before it needs a device, so these errors hold on any machine."""
    from lnlib.cuda import api

    with pytest.raises(TypeError, match=r"^x must be a cupy\.ndarray or a CUDA torch\.Tensor, got ndarray"):
        api.layer_norm_forward(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"^cache must be the LayerNormCudaCache"):
        api.layer_norm_backward(np.ones((2, 4), np.float32), None)
