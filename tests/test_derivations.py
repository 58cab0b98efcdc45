"""Six derivations of the backward agree to 1e-12 in float64, with the oracle and with each other."""

import itertools

import numpy as np
import pytest

from lnlib import derivations
from lnlib.oracle import layer_norm_longdouble, max_rel_error

NAMES = list(derivations.DERIVATIONS)


@pytest.fixture
def case(rng):
    x = rng.standard_normal((3, 4, 12)) * 1.7 + 0.3
    return x, rng.standard_normal(12), rng.standard_normal(x.shape)


@pytest.mark.parametrize("name", NAMES)
def test_each_matches_oracle(case, name):
    x, gamma, dy = case
    _, rdx, rdg, rdb = layer_norm_longdouble(x, gamma, None, 1e-5, dy)
    dx, dgamma, dbeta = derivations.DERIVATIONS[name](dy, x, gamma, 1e-5)
    assert max_rel_error(dx, rdx) < 1e-12
    assert max_rel_error(dgamma, rdg) < 1e-12
    assert max_rel_error(dbeta, rdb) < 1e-12


@pytest.mark.parametrize("a,b", list(itertools.combinations(NAMES, 2)))
def test_pairwise_agreement(case, a, b):
    x, gamma, dy = case
    for ga, gb in zip(derivations.DERIVATIONS[a](dy, x, gamma), derivations.DERIVATIONS[b](dy, x, gamma)):
        assert max_rel_error(ga, gb) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_without_gamma(rng, name):
    x, dy = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    dx, _, _ = derivations.DERIVATIONS[name](dy, x, None)
    dx1, _, _ = derivations.DERIVATIONS[name](dy, x, np.ones(7))
    assert max_rel_error(dx, dx1) < 1e-14


def test_jacobian_structure(rng):
    # with eps = 0 the Jacobian annihilates 1 and x_hat and is symmetric (gamma = 1): a projection
    x = rng.standard_normal(9)
    J = derivations.layer_norm_jacobian(x, eps=0.0)
    x_hat = (x - x.mean()) / x.std()
    np.testing.assert_allclose(J @ np.ones(9), 0, atol=1e-14)
    np.testing.assert_allclose(J @ x_hat, 0, atol=1e-13)
    np.testing.assert_allclose(J, J.T, atol=1e-15)
    P = J * x.std()  # rstd * P  ->  P
    np.testing.assert_allclose(P @ P, P, atol=1e-13)
    assert np.linalg.matrix_rank(P) == 9 - 2


def test_a_wrong_formula_is_caught(case):
    # the agreement test has teeth: dropping the radial term is detected
    x, gamma, dy = case
    mu = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    g = dy * gamma
    wrong = rstd * (g - g.mean(-1, keepdims=True))
    assert max_rel_error(wrong, derivations.compact(dy, x, gamma)[0]) > 1e-2
