"""``lnlib.symbolic``: ``identically_zero`` decides correctly both ways, and the LaTeX the book prints.

``identically_zero`` renames sigma^2 + eps to s^2 (and a lone eps to s^2 - sigma^2), clears the powers
of s and expands. It must say True for expressions that are zero without looking like it (the
deviations summing to zero, the eps identity sum(x_hat^2) = D (1 - eps rstd^2), derivatives of rstd
to second order, a Jacobian entry against its compact form, the backward of a random-dy loss against
the compact dx) and False for ones that are not, including near misses of each.

``latex(D, 'raw')`` is SymPy's derivative of the definition and ``latex(D, 'compact')`` the three-term
form in the symbols rstd and x_hat: checked exactly where short (D = 1, 2), and against an independent
construction of each matrix entry by entry for D = 2, 3.
"""

import re

import pytest
import sympy as sp

from lnlib import symbolic


@pytest.fixture(params=[2, 3, 4])
def r(request):
    return symbolic.row(request.param)


def _second_derivative_identity(r, k):
    # d2 rstd / dx_1^2 = 3 rstd^5 (x_1 - mu)^2 / D^2 - rstd^3 (D - 1) / D^2 (with k = D - 1)
    D = r.D
    return sp.diff(r.rstd, r.x[0], 2) - (3 * r.rstd**5 * (r.x[0] - r.mu) ** 2 / D**2 - r.rstd**3 * k / D**2)


def _dx_of_a_random_dy_loss(r):
    """(autodiff of sum dy y with respect to x_1, the compact formula's dx_1), dy symbolic."""
    dy = sp.symbols(f"dy_1:{r.D + 1}", real=True)
    loss = sum(d * y for d, y in zip(dy, r.y))
    g = [gm * d for gm, d in zip(r.gamma, dy)]
    g_mean = sum(g) / r.D
    gx_mean = sum(a * b for a, b in zip(g, r.x_hat)) / r.D
    return sp.diff(loss, r.x[0]), r.rstd * (g[0] - g_mean - r.x_hat[0] * gx_mean)


def test_zero_expressions_that_do_not_look_zero(r):
    D = r.D
    assert symbolic.identically_zero(sum(r.x_hat), D)  # the deviations sum to zero
    assert symbolic.identically_zero(sum(h**2 for h in r.x_hat) - D * (1 - r.eps * r.rstd**2), D)  # a lone eps
    assert symbolic.identically_zero(sp.diff(r.rstd, r.x[0]) + r.rstd**3 * (r.x[0] - r.mu) / D, D)
    assert symbolic.identically_zero(_second_derivative_identity(r, D - 1), D)
    assert symbolic.identically_zero(symbolic.jacobian(D)[0, 1] - symbolic.compact_jacobian(D)[0, 1], D)
    auto, compact = _dx_of_a_random_dy_loss(r)
    assert symbolic.identically_zero(auto - compact, D)
    for e in (sum(r.x_hat), sp.diff(r.rstd, r.x[0]) + r.rstd**3 * (r.x[0] - r.mu) / D):
        assert e != 0  # not zero before the proof: the function has work to do


def test_nonzero_expressions_and_near_misses(r):
    D = r.D
    assert not symbolic.identically_zero(sum(h**2 for h in r.x_hat) - D, D)  # = -D eps rstd^2, not 0
    assert not symbolic.identically_zero(sum(h**2 for h in r.x_hat) - D * (1 + r.eps * r.rstd**2), D)
    assert not symbolic.identically_zero(sp.diff(r.rstd, r.x[0]), D)
    assert not symbolic.identically_zero(sp.diff(r.rstd, r.x[0]) - r.rstd**3 * (r.x[0] - r.mu) / D, D)
    assert not symbolic.identically_zero(_second_derivative_identity(r, D), D)
    assert not symbolic.identically_zero(symbolic.jacobian(D)[0, 0] - symbolic.compact_jacobian(D)[0, 1], D)
    auto, compact = _dx_of_a_random_dy_loss(r)
    assert not symbolic.identically_zero(auto - compact + r.rstd * r.x_hat[0] * r.x_hat[1] / 10**9, D)
    assert not symbolic.identically_zero(r.rstd - 1 / sp.sqrt(r.var), D)
    assert not symbolic.identically_zero(r.x[0] - r.x[1], D)


# --- the LaTeX --------------------------------------------------------------------------------


def test_latex_of_one_column_is_exact():
    assert symbolic.latex(1) == r"\left[\begin{matrix}0\end{matrix}\right]"  # y = beta: no x at all
    # one column: delta - 1/D = 0 leaves only the radial term
    assert symbolic.latex(1, "compact") == (r"\left[\begin{matrix}- \hat{x}_1^{2} \mathrm{rstd} \gamma_{1}"
                                            r"\end{matrix}\right]")


def test_compact_latex_of_two_columns_has_the_three_terms():
    text = symbolic.latex(2, "compact")
    rows = _entries(text)
    assert len(rows) == 2 and all(len(row) == 2 for row in rows)
    for i, row in enumerate(rows):
        for j, entry in enumerate(row):
            assert entry.startswith(rf"\mathrm{{rstd}} \gamma_{{{i + 1}}} \left(")  # gamma_i rstd (...)
            xx = rf"\hat{{x}}_{i + 1}^{{2}}" if i == j else r"\hat{x}_1 \hat{x}_2"
            assert rf"\frac{{{xx}}}{{2}}" in entry  # x_hat_i x_hat_j / D
            assert (r"\frac{1}{2} - " if i == j else r"- \frac{1}{2}") in entry  # delta_ij - 1/D
    assert "0.5" not in text and r"\epsilon" not in text


def _entries(text):
    """The entries of a LaTeX matrix as SymPy prints it, row by row."""
    m = re.fullmatch(r"\\left\[\\begin\{matrix\}(.*)\\end\{matrix\}\\right\]", text, flags=re.S)
    assert m, text[:80]
    return [row.split(" & ") for row in m.group(1).split(r"\\")]


@pytest.mark.parametrize("D", [2, 3])
def test_raw_latex_is_the_derivative_of_the_definition(D):
    # built here from the definition, independently of lnlib.symbolic, with the same symbol names
    x = sp.symbols(f"x_1:{D + 1}", real=True)
    gamma = sp.symbols(f"gamma_1:{D + 1}", real=True)
    beta = sp.symbols(f"beta_1:{D + 1}", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    mu = sum(x) / D
    var = sum((v - mu) ** 2 for v in x) / D
    y = [g * (v - mu) / sp.sqrt(var + eps) + b for g, v, b in zip(gamma, x, beta)]
    rows = _entries(symbolic.latex(D))
    assert len(rows) == D and all(len(row) == D for row in rows)
    for i in range(D):
        for j in range(D):
            entry = rows[i][j]
            assert set(re.findall(r"\\gamma_\{(\d+)\}", entry)) == {str(i + 1)}  # row i: y_i, only gamma_i
            assert r"\epsilon" in entry and r"\hat" not in entry and "rstd" not in entry
            assert entry == sp.latex(sp.diff(y[i], x[j])), (i, j)  # entry (i, j) is dy_i/dx_j


@pytest.mark.parametrize("D", [2, 3])
def test_compact_latex_is_the_compact_form(D):
    rstd = sp.Symbol(r"\mathrm{rstd}")
    xh = sp.symbols(rf"\hat{{x}}_1:{D + 1}")
    gamma = sp.symbols(f"gamma_1:{D + 1}", real=True)
    rows = _entries(symbolic.latex(D, "compact"))
    for i in range(D):
        for j in range(D):
            delta = 1 if i == j else 0
            want = gamma[i] * rstd * (delta - sp.Rational(1, D) - xh[i] * xh[j] / D)
            assert rows[i][j] == sp.latex(want), (i, j)
    assert rf"\frac{{1}}{{{D}}}" in symbolic.latex(D, "compact")  # exact 1/D, not a decimal


def test_latex_rejects_an_unknown_form():
    with pytest.raises(ValueError, match=r"^which must be 'raw' or 'compact', got 'other'$"):
        symbolic.latex(2, "other")
