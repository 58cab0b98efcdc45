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


#: width of the book's text column in CSS pixels: a figure wider than this is scaled down to it
COLUMN_PX = 690
#: smallest type a reader should have to read, in points as the browser shows them (96 CSS px per inch)
MIN_POINTS = 8.0


def shown_scale(fig, column_px: float = COLUMN_PX) -> float:
    """Points on the page per point in the figure, once the PNG is shown in the text column.

    The PNG is ``width_in * dpi`` pixels wide and is shown at that many CSS pixels, or scaled down to
    the column if wider; a CSS pixel is 1/96 inch, so ``s`` points in the figure show as
    ``s * dpi/96 * min(1, column_px/(width_in*dpi))`` points.
    """
    dpi = matplotlib.rcParams["savefig.dpi"]
    dpi = fig.dpi if dpi == "figure" else float(dpi)
    width_px = fig.get_figwidth() * dpi
    return dpi / 96.0 * min(1.0, column_px / width_px)


def _texts(fig):
    """Every visible, non-empty text of a drawn figure (tick labels outside the view are skipped)."""
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.figure is fig:
            yield t


def readable(fig, column_px: float = COLUMN_PX) -> None:
    """Raise every text of ``fig`` to the smallest size that shows as :data:`MIN_POINTS` in the column.

    Call it before ``tight_layout``: a wide multi-panel figure keeps its layout and gets larger type.
    """
    need = MIN_POINTS / shown_scale(fig, column_px) + 1e-9
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for which in ("major", "minor"):
                ticks = axis.get_major_ticks() if which == "major" else axis.get_minor_ticks()
                size = ticks[0].label1.get_fontsize() if ticks else matplotlib.rcParams["xtick.labelsize"]
                if isinstance(size, str) or size < need:
                    axis.set_tick_params(which=which, labelsize=need)
    fig.canvas.draw()
    for t in _texts(fig):
        if t.get_fontsize() < need:
            t.set_fontsize(need)


def finish(fig, column_px: float = COLUMN_PX) -> None:
    """Make ``fig`` readable at the column width, lay it out, and check it (:func:`check_figure`)."""
    import warnings

    readable(fig, column_px)
    if fig.get_layout_engine() is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                fig.tight_layout()
            except UserWarning as w:  # e.g. a colorbar shared by several axes
                raise ValueError(
                    f"tight_layout cannot lay this figure out ({w}): create it with layout='constrained'"
                ) from None
    check_figure(fig, column_px)


def check_figure(fig, column_px: float = COLUMN_PX) -> None:
    """Raise ValueError unless ``fig`` is readable where the book shows it.

    Checked: an opaque background; every axes with data has x and y labels (a heat map may label its
    rows with tick labels instead); every text shows at :data:`MIN_POINTS` or more once the figure is
    scaled to the ``column_px`` text column; a log axis shows at least two labelled ticks; tick labels
    do not overlap; no legend covers a data point of its axes.
    """
    import numpy as np

    if fig.patch.get_alpha() not in (None, 1.0) or fig.get_facecolor()[3] < 1.0:
        raise ValueError("figure background must be opaque")
    fig.canvas.draw()
    scale = shown_scale(fig, column_px)
    for t in _texts(fig):
        shown = t.get_fontsize() * scale
        if shown < MIN_POINTS - 1e-6:
            raise ValueError(
                f"text {t.get_text()[:30]!r} shows at {shown:.1f} pt at the {column_px}-px column, "
                f"below {MIN_POINTS} pt: make the figure narrower or its type larger (plotting.readable)"
            )
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        is_colorbar = getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>"
        has_data = bool(ax.lines or ax.collections or ax.images or ax.patches)
        if has_data and not is_colorbar:
            x_siblings = ax.get_shared_x_axes().get_siblings(ax)  # stacked panels label the bottom one
            if not any(a.get_xlabel() for a in x_siblings) and not ax.get_xticklabels():
                raise ValueError(f"axes {ax.get_title()!r} has no x label")
            if not ax.get_ylabel() and ax.get_yaxis().get_visible() and ax.get_yticks().size:
                if not ax.images:  # a heat map labels its rows with tick labels
                    raise ValueError(f"axes {ax.get_title()!r} has no y label")
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not axis.get_visible():
                continue
            lo, hi = sorted(ax.get_xlim() if name == "x" else ax.get_ylim())
            shown_labels = [
                tick.label1
                for ticks, locs in ((axis.get_major_ticks(), axis.get_majorticklocs()),
                                    (axis.get_minor_ticks(), axis.get_minorticklocs()))
                for tick, loc in zip(ticks, locs)
                if lo <= loc <= hi and tick.label1.get_visible() and tick.label1.get_text().strip()
            ]
            shared = ax.get_shared_x_axes() if name == "x" else ax.get_shared_y_axes()
            hidden_by_sharing = not shown_labels and len(shared.get_siblings(ax)) > 1
            if axis.get_scale() == "log" and has_data and len(shown_labels) < 2 and not hidden_by_sharing:
                raise ValueError(f"axes {ax.get_title()!r}: the log {name} axis has fewer than two labelled ticks")
            # labels closer than a space's width read as one ("819216384"): pad each box before comparing
            gap = 0.25 * MIN_POINTS / scale * fig.dpi / 72
            boxes = [lab.get_window_extent(renderer).expanded(1, 1).padded(gap / 2) for lab in shown_labels]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    inter = a.intersection(a, b)
                    if inter is not None and inter.width > 0 and inter.height > 0:
                        raise ValueError(f"axes {ax.get_title()!r}: {name} tick labels overlap or touch")
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            box = legend.get_window_extent(renderer)
            points = [line.get_xydata() for line in ax.lines if line.get_visible() and len(line.get_xydata())]
            points += [c.get_offsets() for c in ax.collections if c.get_visible() and len(c.get_offsets())]
            for xy in points:
                xy = np.asarray(xy, dtype=float)
                xy = xy[np.all(np.isfinite(xy), axis=1)]
                if not len(xy):
                    continue
                disp = ax.transData.transform(xy)
                inside = (disp[:, 0] > box.x0) & (disp[:, 0] < box.x1) & (disp[:, 1] > box.y0) & (disp[:, 1] < box.y1)
                if inside.any():
                    raise ValueError(f"axes {ax.get_title()!r}: the legend covers {int(inside.sum())} data point(s)")
