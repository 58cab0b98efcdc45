"""Six derivations of the backward agree to 1e-12 in float64, with the oracle and with each other."""

import itertools

import numpy as np
import pytest

from lnlib import derivations
from lnlib.oracle import layer_norm_longdouble, max_rel_error

from .helpers import U64, agree64

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
    # float64 against long double: half of agree64 for rows of D = 12 (the matrix routes multiply a
    # D x D Jacobian by dy: dot products of 12 terms too), and sums over the 12 rows for dgamma
    tol = agree64(12)
    assert max_rel_error(dx, rdx) < tol
    assert max_rel_error(dgamma, rdg) < tol
    assert max_rel_error(dbeta, rdb) < tol


@pytest.mark.parametrize("a,b", list(itertools.combinations(NAMES, 2)))
def test_pairwise_agreement(case, a, b):
    x, gamma, dy = case
    for ga, gb in zip(derivations.DERIVATIONS[a](dy, x, gamma), derivations.DERIVATIONS[b](dy, x, gamma)):
        assert max_rel_error(ga, gb) < agree64(12)  # two float64 routes, rows of D = 12


@pytest.mark.parametrize("name", NAMES)
def test_without_gamma(rng, name):
    x, dy = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    dx, _, _ = derivations.DERIVATIONS[name](dy, x, None)
    dx1, _, _ = derivations.DERIVATIONS[name](dy, x, np.ones(7))
    # multiplying by gamma = 1 is exact, but a route may order its sums differently with gamma given
    assert max_rel_error(dx, dx1) < agree64(7)


def test_jacobian_structure(rng):
    # with eps = 0 the Jacobian annihilates 1 and x_hat and is symmetric (gamma = 1): a projection
    x = rng.standard_normal(9)
    J = derivations.layer_norm_jacobian(x, eps=0.0)
    x_hat = (x - x.mean()) / x.std()
    # a product of J (entries up to rstd ~ 1) with a vector of 9 entries up to |x_hat| <= sqrt(8):
    # within 9 u64 sum |J_ij v_j| <= 9 * 9 * 3 u64 = 5.4e-14 of the exact zero (Higham's gamma_9)
    size = np.abs(J).sum(1).max()
    np.testing.assert_allclose(J @ np.ones(9), 0, atol=9 * size * U64 * 10)
    np.testing.assert_allclose(J @ x_hat, 0, atol=9 * size * np.sqrt(8) * U64 * 10)
    # J_ij and J_ji are the same formula with the factors in another order: a few roundings apart
    np.testing.assert_allclose(J, J.T, atol=8 * np.abs(J).max() * U64)
    P = J * x.std()  # rstd * P  ->  P
    np.testing.assert_allclose(P @ P, P, atol=9 * np.abs(P).sum(1).max() ** 2 * U64 * 10)
    assert np.linalg.matrix_rank(P) == 9 - 2


def test_a_wrong_formula_is_caught(case):
    # the agreement test has teeth: dropping the radial term is detected
    x, gamma, dy = case
    mu = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    g = dy * gamma
    wrong = rstd * (g - g.mean(-1, keepdims=True))
    # the radial term is O(1) of dx on random data: a bug, not round-off (agree64(12) = 5e-14)
    assert max_rel_error(wrong, derivations.compact(dy, x, gamma)[0]) > 1e-2
