"""One figure style for the whole book: opaque backgrounds, labelled axes, a colour-blind-safe palette.

Opaque white backgrounds keep figures readable in the book's dark theme (a transparent PNG would put
black axis labels on a near-black page). The palette is Okabe and Ito's, distinguishable with the
common forms of colour blindness; lines also differ in marker so a grey-scale print still works.
"""

from __future__ import annotations

import matplotlib

#: Okabe-Ito colours, in the order the book uses them
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "figure.dpi": 110,
    "figure.figsize": (6.4, 3.8),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.framealpha": 1.0,
    "image.cmap": "cividis",  # perceptually uniform and colour-blind safe
}


def use_style() -> None:
    """Apply the book's style to matplotlib (call once at the top of a chapter)."""
    from cycler import cycler

    matplotlib.rcParams.update(STYLE)
    matplotlib.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)


def style_for(i: int) -> dict:
    """Colour and marker for the i-th series, so the same method looks the same in every figure."""
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]}


def check_figure(fig) -> None:
    """Raise ValueError unless every axes with data has labelled x and y axes and the figure is opaque."""
    if fig.patch.get_alpha() not in (None, 1.0) or fig.get_facecolor()[3] < 1.0:
        raise ValueError("figure background must be opaque")
    for ax in fig.axes:
        if not (ax.lines or ax.collections or ax.images or ax.patches):
            continue
        if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        if not ax.get_xlabel() and not ax.get_xticklabels():
            raise ValueError(f"axes {ax.get_title()!r} has no x label")
        if not ax.get_ylabel() and ax.get_yaxis().get_visible() and ax.get_yticks().size:
            if ax.images:  # a heat map labels its rows with tick labels
                continue
            raise ValueError(f"axes {ax.get_title()!r} has no y label")
