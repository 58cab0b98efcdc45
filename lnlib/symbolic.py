r"""The LayerNorm Jacobian derived by SymPy, and proofs that it equals the compact and projection forms.

For a row of D symbols :math:`x_1..x_D`, scale :math:`\gamma_1..\gamma_D` and a positive
:math:`\varepsilon`, SymPy differentiates the definition of :math:`y` directly (no hand-derived
step), and we prove that the result equals

* the compact form :math:`J_{ij} = \gamma_i\,\mathrm{rstd}\,(\delta_{ij} - \tfrac1D - \hat x_i\hat x_j/D)`
  used by the backward, and
* the projection form :math:`J = \mathrm{rstd}\,\mathrm{diag}(\gamma)\,(I - \mathbf 1\mathbf 1^T/D - \hat x\hat x^T/D)`,

by showing that each entry of the difference simplifies to zero. Proving, not sampling: the identity
holds for every real x and every eps > 0.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

__all__ = [
    "Row", "row", "jacobian", "compact_jacobian", "projection_jacobian", "prove", "equal",
    "identically_zero", "latex",
]


class Row:
    """The symbols and forward quantities of one row of length D."""

    def __init__(self, D: int):
        if not isinstance(D, int) or D < 1:
            raise ValueError(f"D must be an integer >= 1, got {D!r}")
        self.D = D
        self.x = sp.Matrix(sp.symbols(f"x_1:{D + 1}", real=True))
        self.gamma = sp.Matrix(sp.symbols(f"gamma_1:{D + 1}", real=True))
        self.beta = sp.Matrix(sp.symbols(f"beta_1:{D + 1}", real=True))
        self.eps = sp.Symbol("epsilon", positive=True)
        self.mu = sum(self.x) / D
        self.var = sum((xi - self.mu) ** 2 for xi in self.x) / D
        self.rstd = 1 / sp.sqrt(self.var + self.eps)
        self.x_hat = (self.x - sp.ones(D, 1) * self.mu) * self.rstd
        self.y = sp.Matrix([g * h + b for g, h, b in zip(self.gamma, self.x_hat, self.beta)])


@lru_cache(maxsize=None)
def row(D: int) -> Row:
    """The (cached) symbols of a row of length D."""
    return Row(D)


@lru_cache(maxsize=None)
def jacobian(D: int) -> sp.Matrix:
    r"""SymPy's own derivative :math:`J_{ij} = \partial y_i/\partial x_j` of the definition, D x D."""
    r = row(D)
    return r.y.jacobian(r.x)


def compact_jacobian(D: int) -> sp.Matrix:
    r"""The compact form :math:`\gamma_i\,\mathrm{rstd}\,(\delta_{ij} - 1/D - \hat x_i\hat x_j/D)`."""
    r = row(D)
    return sp.Matrix(
        D,
        D,
        lambda i, j: r.gamma[i] * r.rstd * (sp.KroneckerDelta(i, j) - sp.Rational(1, D) - r.x_hat[i] * r.x_hat[j] / D),
    )


def projection_jacobian(D: int) -> sp.Matrix:
    r"""The projection form :math:`\mathrm{rstd}\,\mathrm{diag}(\gamma)(I - \mathbf 1\mathbf 1^T/D - \hat x\hat x^T/D)`."""
    r = row(D)
    P = sp.eye(D) - sp.ones(D, D) / D - r.x_hat * r.x_hat.T / D
    return r.rstd * sp.diag(*r.gamma) * P


def identically_zero(expr, D: int) -> bool:
    r"""True if ``expr``, written in ``row(D)``'s symbols, is zero for every real x, gamma, dy and eps > 0.

    Every expression the book derives is a polynomial in x, gamma (and dy) times powers of
    :math:`(\sigma^2+\varepsilon)^{-1/2}`. Renaming :math:`\sigma^2+\varepsilon` to :math:`s^2`, with
    ``s`` a free positive symbol, and multiplying by :math:`s^7` leaves a polynomial, which
    ``expand`` decides exactly. The identity then holds for every ``s``, in particular for
    :math:`s = \sqrt{\sigma^2+\varepsilon}`: a proof, not a check at sample points.

    Parameters
    ----------
    expr : sympy.Expr
        An expression in the symbols of :func:`row` ``(D)`` and any other real symbols.
    D : int
        The row length whose symbols ``expr`` uses.

    Returns
    -------
    bool

    Examples
    --------
    >>> import sympy as sp
    >>> r = row(3)
    >>> identically_zero(sum(r.x) - 3 * r.mu, 3)  # the deviations from the mean sum to zero
    True
    >>> identically_zero(sp.diff(r.rstd, r.x[0]) + r.rstd**3 * (r.x[0] - r.mu) / 3, 3)
    True
    >>> identically_zero(sp.diff(r.rstd, r.x[0]), 3)
    False
    """
    r = row(D)
    s = sp.Symbol("s", positive=True)
    # rename the base before expanding, which would otherwise multiply out sigma^2 inside the power
    e = expr.xreplace({r.var + r.eps: s**2})
    # an eps left outside a power (as in eps * rstd**2) is s**2 - sigma^2
    e = e.xreplace({r.eps: s**2 - r.var})
    return sp.expand(e * s**7) == 0


def _is_zero(expr, r: Row) -> bool:
    # See identically_zero: s**3 clears every denominator of a Jacobian entry.
    s = sp.Symbol("s", positive=True)
    e = sp.expand(expr.xreplace({r.var + r.eps: s**2}) * s**3)
    return e == 0


def prove(D: int, form: str = "compact") -> bool:
    """Return True if SymPy proves ``jacobian(D)`` equals ``form`` ('compact' or 'projection') entrywise.

    Examples
    --------
    >>> prove(2), prove(3, "projection")
    (True, True)
    """
    if form not in ("compact", "projection"):
        raise ValueError(f"form must be 'compact' or 'projection', got {form!r}")
    other = compact_jacobian(D) if form == "compact" else projection_jacobian(D)
    return equal(jacobian(D), other, D)


def equal(A: sp.Matrix, B: sp.Matrix, D: int) -> bool:
    """True if the D x D matrices A and B, written in ``row(D)``'s symbols, are identically equal."""
    r = row(D)
    diff = A - B
    return all(_is_zero(diff[i, j], r) for i in range(D) for j in range(D))


def latex(D: int, which: str = "raw") -> str:
    """LaTeX for the book: the raw SymPy Jacobian of entry (1,1) and (1,2) ('raw'), or the compact matrix.

    Parameters
    ----------
    D : int
    which : {'raw', 'compact'}
        'raw' gives SymPy's unsimplified derivative matrix; 'compact' writes it with the symbols
        ``rstd`` and ``x_hat``, which is what the three-term structure looks like.
    """
    if which == "raw":
        return sp.latex(jacobian(D))
    if which == "compact":
        rstd = sp.Symbol(r"\mathrm{rstd}")
        xh = sp.symbols(rf"\hat{{x}}_1:{D + 1}")
        g = row(D).gamma
        M = sp.Matrix(D, D, lambda i, j: g[i] * rstd * (sp.KroneckerDelta(i, j) - sp.Rational(1, D) - xh[i] * xh[j] / D))
        return sp.latex(M)
    raise ValueError(f"which must be 'raw' or 'compact', got {which!r}")
