"""Numerical gradients: what they reach, what they catch, and that they leave their inputs alone."""

import numpy as np
import pytest

from lnlib import gradcheck, layer_norm_backward, layer_norm_forward, reference
from lnlib.oracle import layer_norm_longdouble, max_rel_error


@pytest.fixture
def case(rng):
    x = rng.standard_normal((3, 10)) * 2 + 1
    return x, rng.standard_normal(10), rng.standard_normal(10), rng.standard_normal(x.shape)


def test_complex_step_reaches_machine_precision(case):
    x, gamma, beta, dy = case
    _, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    dx, dgamma, dbeta = gradcheck.complex_step(x, gamma, beta, dy)
    assert max_rel_error(dx, rdx) < 1e-14
    assert max_rel_error(dgamma, rdg) < 1e-14
    assert max_rel_error(dbeta, rdb) < 1e-14


def test_central_difference_reaches_u_two_thirds(case):
    x, gamma, beta, dy = case
    _, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    dx, dgamma, dbeta = gradcheck.central_difference(x, gamma, beta, dy)
    for got, ref in ((dx, rdx), (dgamma, rdg), (dbeta, rdb)):
        e = max_rel_error(got, ref)
        assert e < 1e-8


def test_step_size_tradeoff(case):
    # the V: too big a step -> truncation error, too small -> round-off; the default sits near the bottom
    x, gamma, beta, dy = case
    _, rdx, _, _ = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    err = {h: max_rel_error(gradcheck.central_difference(x, gamma, beta, dy, h=h)[0], rdx) for h in (1e-1, 1e-5, 1e-12)}
    default = max_rel_error(gradcheck.central_difference(x, gamma, beta, dy)[0], rdx)
    assert err[1e-1] > 100 * err[1e-5]
    assert err[1e-12] > 100 * err[1e-5]
    assert default < 10 * err[1e-5]


def test_never_mutates(case):
    x, gamma, beta, dy = case
    copies = [a.copy() for a in case]
    gradcheck.central_difference(x, gamma, beta, dy)
    gradcheck.complex_step(x, gamma, beta, dy)
    gradcheck.check_gradients(layer_norm_forward, layer_norm_backward, x, gamma, beta, dy)
    for a, c in zip(case, copies):
        np.testing.assert_array_equal(a, c)


def test_check_gradients_passes_lnlib(case):
    x, gamma, beta, dy = case
    report = gradcheck.check_gradients(layer_norm_forward, layer_norm_backward, x, gamma, beta, dy)
    assert report.worst() < 1e-13
    report = gradcheck.check_gradients(layer_norm_forward, layer_norm_backward, x, None, None)
    assert report.dgamma is None and report.dbeta is None and report.dx < 1e-13


def _buggy_backward(dy, cache):
    # forgets the radial term -x_hat * mean(g x_hat): a real, common bug
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    g = dy * cache.gamma
    return dx + cache.rstd[..., None] * cache.x_hat * (g * cache.x_hat).mean(-1, keepdims=True), dgamma, dbeta


def test_sum_loss_hides_a_bug_random_dy_catches_it(case):
    x, _, beta, _ = case
    gamma = np.ones(x.shape[-1])  # a freshly initialised layer
    ones = np.ones_like(x)  # the loss y.sum()
    # with dy = 1 the true dx is zero (LayerNorm's rows sum to a constant) and so is the buggy one
    _, cache = layer_norm_forward(x, gamma, beta)
    dx_true = gradcheck.complex_step(x, gamma, beta, ones)[0]
    dx_buggy = _buggy_backward(ones, cache)[0]
    assert np.max(np.abs(dx_true)) < 1e-12
    assert np.max(np.abs(dx_buggy - dx_true)) < 1e-12  # "passes"
    caught = gradcheck.check_gradients(layer_norm_forward, _buggy_backward, x, gamma, beta)
    assert caught.dx > 1e-2


def test_dy_required(case):
    x = case[0]
    with pytest.raises(ValueError, match="dy"):
        gradcheck.central_difference(x)
    with pytest.raises(ValueError, match="dy"):
        gradcheck.complex_step(x)


def test_non_rowwise_function_still_works_per_column(rng):
    # the per-column trick is valid because each row's loss only depends on its own row
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    dx_cs, _, _ = gradcheck.complex_step(x, dy=dy, f=lambda a, g, b: reference.forward(a, g, b, 0.1)[0])
    dx_an, _, _ = reference.backward(dy, reference.forward(x, eps=0.1)[1])
    assert max_rel_error(dx_cs, dx_an) < 1e-14
