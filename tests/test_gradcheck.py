"""Numerical gradients: what they reach, what they catch, and that they leave their inputs alone."""

import numpy as np
import pytest

from lnlib import gradcheck, layer_norm_backward, layer_norm_forward, reference
from lnlib.oracle import layer_norm_longdouble, max_rel_error

from .helpers import U64, agree64


@pytest.fixture
def case(rng):
    x = rng.standard_normal((3, 10)) * 2 + 1
    return x, rng.standard_normal(10), rng.standard_normal(10), rng.standard_normal(x.shape)


def test_complex_step_reaches_machine_precision(case):
    x, gamma, beta, dy = case
    _, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    dx, dgamma, dbeta = gradcheck.complex_step(x, gamma, beta, dy)
    # the complex step has no cancellation: a float64 evaluation of LayerNorm's derivative, within
    # half of agree64 for rows of D = 10 (kappa 1: no difference of large terms)
    tol = agree64(10, kappa=1.0)
    assert max_rel_error(dx, rdx) < tol
    assert max_rel_error(dgamma, rdg) < tol
    assert max_rel_error(dbeta, rdb) < tol


def test_central_difference_reaches_u_two_thirds(case):
    x, gamma, beta, dy = case
    _, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, beta, 1e-5, dy)
    dx, dgamma, dbeta = gradcheck.central_difference(x, gamma, beta, dy)
    for got, ref in ((dx, rdx), (dgamma, rdg), (dbeta, rdb)):
        e = max_rel_error(got, ref)
        # the best step leaves an error of order u^(2/3) = 2.3e-11 times a constant of the problem
        # (module docstring), which the default step leaves out: measured at most 13 u^(2/3) over 20
        # seeds of this case, and 200 leaves a 15x margin
        assert e < 200 * U64 ** (2 / 3)


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
    gradcheck.check_gradients(reference.forward, reference.backward, x, gamma, beta, dy)
    for a, c in zip(case, copies):
        np.testing.assert_array_equal(a, c)


def test_never_mutates_even_if_the_code_under_test_does(case):
    # the forward and backward under test get private copies, so their bugs stay theirs
    def forward(x, gamma, beta, eps):
        y, cache = reference.forward(x, gamma, beta, eps)
        x *= 2.0
        return y, cache

    def backward(dy, cache):
        out = reference.backward(dy, cache)
        dy[...] = 0.0
        return out

    x, gamma, beta, dy = case
    copies = [a.copy() for a in case]
    gradcheck.check_gradients(forward, backward, x, gamma, beta, dy)
    for a, c in zip(case, copies):
        np.testing.assert_array_equal(a, c)


def test_default_step_is_cube_root_of_unit_roundoff():
    u = gradcheck.unit_roundoff()
    assert u == 2.0**-53 == np.finfo(np.float64).eps / 2
    a = np.array([0.0, 0.5, -3.0])
    np.testing.assert_array_equal(gradcheck.default_step(a), np.cbrt(u) * np.array([1.0, 1.0, 3.0]))


def test_check_gradients_passes_lnlib(case):
    x, gamma, beta, dy = case
    report = gradcheck.check_gradients(layer_norm_forward, layer_norm_backward, x, gamma, beta, dy)
    # lnlib's backward against the complex step: two float64 evaluations, rows of D = 10
    assert report.worst() < agree64(10)
    report = gradcheck.check_gradients(layer_norm_forward, layer_norm_backward, x, None, None)
    assert report.dgamma is None and report.dbeta is None and report.dx < agree64(10)


def test_check_gradients_differentiates_the_forward_it_is_given(case):
    x, gamma, beta, dy = case
    # a forward that accepts complex input is itself differentiated
    good = gradcheck.check_gradients(reference.forward, reference.backward, x, gamma, beta, dy)
    assert good.worst() < agree64(10) and good.differentiated == "lnlib.reference.forward"

    def doubled(x, gamma, beta, eps):  # wrong: twice LayerNorm, with LayerNorm's cache
        y, cache = reference.forward(x, gamma, beta, eps)
        return 2 * y, cache

    wrong = gradcheck.check_gradients(doubled, reference.backward, x, gamma, beta, dy)
    assert wrong.differentiated.endswith("doubled")
    assert wrong.y == 0.0 and 0.4 < wrong.dx < 0.6  # the backward gives half the derivative of 2y

    # lnlib's forward refuses complex input: the complex step goes through reference.forward, and a
    # wrong real-only forward is caught by the y error
    def doubled_lnlib(x, gamma, beta, eps):
        y, cache = layer_norm_forward(x, gamma, beta, eps)
        return 2 * y, cache

    ok = gradcheck.check_gradients(layer_norm_forward, layer_norm_backward, x, gamma, beta, dy)
    assert ok.differentiated == "lnlib.reference.forward" and ok.y < agree64(10, kappa=1.0)
    wrong = gradcheck.check_gradients(doubled_lnlib, layer_norm_backward, x, gamma, beta, dy)
    assert wrong.differentiated == "lnlib.reference.forward"
    assert wrong.dx < agree64(10) and wrong.y == 1.0 and wrong.worst() == wrong.y  # |2y - y| / |y|


def _buggy_backward(dy, cache):
    # forgets the radial term -x_hat * mean(g x_hat): a real, common bug
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    g = dy * cache.gamma
    return dx + cache.rstd[..., None] * cache.x_hat * (g * cache.x_hat).mean(-1, keepdims=True), dgamma, dbeta


def test_sum_loss_hides_a_bug_random_dy_catches_it(case):
    x, _, beta, _ = case
    gamma = np.ones(x.shape[-1])  # a freshly initialised layer
    ones = np.ones_like(x)  # the loss y.sum()
    # with dy = 1 and a constant gamma, g = gamma is constant, so g - mean(g) = 0 and
    # mean(g x_hat) = 0: the true dx is zero, and so is the buggy one
    dx_random_gamma = gradcheck.complex_step(x, np.linspace(0.5, 2.0, x.shape[-1]), beta, ones)[0]
    assert np.max(np.abs(dx_random_gamma)) > 1e-2  # not zero in general
    _, cache = layer_norm_forward(x, gamma, beta)
    dx_true = gradcheck.complex_step(x, gamma, beta, ones)[0]
    dx_buggy = _buggy_backward(ones, cache)[0]
    # zero up to round-off: terms of size rstd (x has std 2 here, rstd ~ 0.5) cancelling over D = 10
    assert np.max(np.abs(dx_true)) < agree64(10)
    assert np.max(np.abs(dx_buggy - dx_true)) < agree64(10)  # "passes"
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
    assert max_rel_error(dx_cs, dx_an) < agree64(5)
