"""PNG rendering of the calibration plot data (report.PlotData) with matplotlib.

matplotlib is the optional extra ``agetdaq[plots]``; :func:`available` says whether it is
installed. Figures are drawn with the object API on an Agg canvas (no pyplot, no global backend
change), so this is safe next to a running Qt GUI. ``render`` is the renderer that
``report.render_png(plot, path, render)`` expects.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from agetdaq.readout.analysis.calibration.report import PlotData, Series

MISSING = "matplotlib is not installed: install agetdaq[plots] for PNG plots"
FIGSIZE = (8.0, 5.0)
DPI = 110
COMPONENT_STYLE = {"model": ("C3", "-", 1.6)}


def available() -> bool:
    """True when matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def render(plot: PlotData, path: str | Path) -> None:
    """Draw ``plot`` into a PNG file at ``path`` (ImportError if matplotlib is missing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if plot.kind == "gainmap":
        _gainmap(fig, ax, plot)
    else:
        for s in plot.series:
            _series(ax, s)
        if plot.kind == "spectrum":
            _spectrum_range(ax, plot)
        if len(plot.series) > 1:
            ax.legend(fontsize="small", loc="upper right")
        ax.grid(alpha=0.3)
    ax.set_xlabel(plot.x_label)
    ax.set_ylabel(plot.y_label)
    if plot.kind == "gainmap":  # notes would hide cells: they go under the title
        ax.set_title("\n".join([plot.title, *plot.notes]), fontsize="medium")
    else:
        ax.set_title(plot.title)
    if plot.notes and plot.kind != "gainmap":
        ax.text(
            0.02,
            0.98,
            "\n".join(plot.notes),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )
    fig.tight_layout()
    fig.savefig(Path(path), format="png")


def _series(ax, s: Series) -> None:
    x, y = np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)
    if s.style == "step":
        ax.stairs(y, x, label=s.name, color="0.2", linewidth=1.0)
    elif s.style == "points":
        yerr = None if s.yerr is None else np.nan_to_num(np.asarray(s.yerr, dtype=float))
        ax.errorbar(x, y, yerr=yerr, fmt="o", markersize=4, capsize=2, label=s.name)
    else:
        color, style, width = COMPONENT_STYLE.get(s.name, (None, "--", 1.0))
        ax.plot(x, y, linestyle=style, linewidth=width, color=color, label=s.name)


def _spectrum_range(ax, plot: PlotData) -> None:
    """Show the populated part of the spectrum (plus the fit window)."""
    data = plot.series[0]
    counts = np.asarray(data.y, dtype=float)
    edges = np.asarray(data.x, dtype=float)
    nz = np.flatnonzero(counts)
    if not nz.size:
        return
    hi = edges[min(nz[-1] + 1, edges.size - 1)]
    for s in plot.series[1:]:
        if len(s.x):
            hi = max(hi, float(np.max(s.x)))
    ax.set_xlim(0.0, hi * 1.05)


def _gainmap(fig, ax, plot: PlotData) -> None:
    image = np.asarray(plot.image, dtype=float)
    extent = plot.extent or (0.0, image.shape[1], 0.0, image.shape[0])
    finite = image[np.isfinite(image)]
    if finite.size:
        spread = max(float(np.max(np.abs(finite - 1.0))), 0.02)
        vmin, vmax = 1.0 - spread, 1.0 + spread
    else:
        vmin, vmax = 0.9, 1.1
    shown = np.ma.masked_invalid(image)
    im = ax.imshow(
        shown, origin="lower", extent=extent, cmap="coolwarm", vmin=vmin, vmax=vmax, aspect="equal"
    )
    fig.colorbar(im, ax=ax, label="relative gain")
    ny, nx = image.shape
    x0, x1, y0, y1 = extent
    for iy in range(ny):
        for ix in range(nx):
            v = image[iy, ix]
            ax.text(
                x0 + (ix + 0.5) * (x1 - x0) / nx,
                y0 + (iy + 0.5) * (y1 - y0) / ny,
                "fail" if not np.isfinite(v) else f"{v:.3f}",
                ha="center",
                va="center",
                fontsize="x-small",
            )
