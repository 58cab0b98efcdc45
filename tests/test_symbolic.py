"""SymPy proves the Jacobian equals the compact and projection forms for D = 2..5."""

import numpy as np
import pytest
import sympy as sp

from lnlib import derivations, symbolic


@pytest.mark.parametrize("D", [2, 3, 4, 5])
@pytest.mark.parametrize("form", ["compact", "projection"])
def test_proof(D, form):
    assert symbolic.prove(D, form)


@pytest.mark.parametrize("D", [2, 3, 4])
def test_proof_rejects_a_wrong_form(D):
    r = symbolic.row(D)
    no_radial = sp.Matrix(D, D, lambda i, j: r.gamma[i] * r.rstd * (sp.KroneckerDelta(i, j) - sp.Rational(1, D)))
    assert not symbolic.equal(symbolic.jacobian(D), no_radial, D)
    wrong_sign = sp.Matrix(D, D, lambda i, j: symbolic.compact_jacobian(D)[i, j] * (-1 if i == j == 0 else 1))
    assert not symbolic.equal(symbolic.jacobian(D), wrong_sign, D)


def test_symbolic_jacobian_matches_numeric(rng):
    D = 4
    r = symbolic.row(D)
    x, gamma = rng.standard_normal(D), rng.standard_normal(D)
    subs = {**dict(zip(r.x, x)), **dict(zip(r.gamma, gamma)), r.eps: 1e-5}
    J_sym = np.array(symbolic.jacobian(D).evalf(subs=subs), dtype=float)
    # SymPy evaluates to 15 digits, the NumPy Jacobian in float64 for D = 4: both within agree64(4)
    # (1.8e-14) times the entries' size (rstd |gamma| ~ 1 to 3) of the exact value
    np.testing.assert_allclose(J_sym, derivations.layer_norm_jacobian(x, gamma, 1e-5), rtol=1e-12, atol=1e-13)


def test_latex():
    raw = symbolic.latex(2)
    assert raw.startswith(r"\left[\begin{matrix}") and r"\epsilon" in raw
    compact = symbolic.latex(3, "compact")
    assert r"\mathrm{rstd}" in compact and r"\hat{x}_1" in compact
    with pytest.raises(ValueError, match="which"):
        symbolic.latex(2, "other")


def test_bad_arguments():
    with pytest.raises(ValueError, match="D must be"):
        symbolic.Row(0)
    with pytest.raises(ValueError, match="form"):
        symbolic.prove(2, "other")
