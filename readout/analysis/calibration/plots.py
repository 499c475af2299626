"""PNG rendering of the calibration plot data (plotdata.PlotData) with matplotlib.

matplotlib is the optional extra ``agetdaq[plots]``; :func:`available` says whether it is
installed. Figures are drawn with the object API on an Agg canvas (no pyplot, no global backend
change), so this is safe next to a running Qt GUI. ``render`` is the renderer that
``report.render_png(plot, path, render)`` expects.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np

from agetdaq.readout.analysis.calibration.plotdata import PlotData, Series

MISSING = "matplotlib is not installed: install agetdaq[plots] for PNG plots"
WIDTH_IN, HEIGHT_IN = 9.0, 5.6
DPI = 110
LINE_IN = 0.17  # height of one footer line
WRAP = 125  # characters per footer line


def available() -> bool:
    """True when matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def render(plot: PlotData, path: str | Path) -> None:
    """Draw ``plot`` into a PNG file at ``path`` (ImportError if matplotlib is missing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    boxed = plot.kind == "trend"  # a spectrum's notes would hide its peaks: under the axes
    lines = plot.footer if boxed or plot.kind == "gainmap" else [*plot.notes, *plot.footer]
    footer = [w for line in lines for w in textwrap.wrap(line, WRAP) or [""]]
    extra = LINE_IN * (len(footer) + (1 if footer else 0))
    height = HEIGHT_IN + (1.0 if plot.kind == "gainmap" else 0.0) + extra
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    top = 0.86 if plot.secondary_x or plot.kind == "gainmap" else 0.92
    bottom = (0.55 + extra) / height + 0.02
    ax = fig.add_axes((0.08, bottom, 0.9 if plot.kind != "gainmap" else 0.8, top - bottom))
    if plot.kind == "gainmap":
        _gainmap(fig, ax, plot)
    else:
        _curves(ax, plot)
    ax.set_xlabel(plot.x_label)
    ax.set_ylabel(plot.y_label)
    title = plot.title if plot.kind != "gainmap" else "\n".join([plot.title, *plot.notes])
    ax.set_title(title, fontsize="medium", pad=24 if plot.secondary_x else 6)
    if plot.notes and boxed:
        ax.text(
            0.99,
            0.98,
            "\n".join(plot.notes),
            transform=ax.transAxes,
            va="top",
            ha="right",
            fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
        )
    for i, line in enumerate(footer):
        fig.text(0.02, (extra - LINE_IN * (i + 1)) / height, line, fontsize="small", va="bottom")
    fig.savefig(Path(path), format="png")


def _x(plot: PlotData, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if plot.x_time:
        return (x * 1000.0).astype("int64").astype("datetime64[ms]")
    return x


def _curves(ax, plot: PlotData) -> None:
    if plot.span is not None:
        ax.axvspan(*plot.span, color="C0", alpha=0.06, label=plot.span_label or None)
    for s in plot.series:
        _series(ax, plot, s)
    if plot.kind == "spectrum":
        _spectrum_axes(ax, plot)
    if plot.x_time:
        import matplotlib.dates as mdates

        loc = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    if plot.kind == "spectrum":
        ax.legend(fontsize="x-small", loc="upper right")
    else:
        ax.margins(x=0.05, y=0.12)
        ax.legend(fontsize="x-small", loc="best")
    ax.grid(alpha=0.3)


def _spectrum_axes(ax, plot: PlotData) -> None:
    """Range, threshold marks, peak labels and the ADC axis on top."""
    data = plot.series[0]
    top = np.asarray(data.y, dtype=float) + np.nan_to_num(np.asarray(data.yerr, dtype=float))
    peak = float(np.nanmax(top)) if top.size else 0.0
    ax.set_ylim(0.0, 1.3 * peak if peak > 0 else 1.0)
    if plot.x_range is not None:
        ax.set_xlim(*plot.x_range)
    bbox = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1}
    for k, m in enumerate(plot.marks):
        ax.axvline(m.x, color=m.color, linestyle=m.linestyle, linewidth=1.2)
        ax.text(
            m.x,
            0.6 - 0.3 * k,
            m.label,
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="center",
            ha="center",
            fontsize="x-small",
            color=m.color,
            bbox=bbox,
        )
    arrow = {"arrowstyle": "-", "color": "0.4", "lw": 0.8}
    for k, a in enumerate(plot.labels):
        dx = 30 if k == 1 else 0  # K-beta sits on K-alpha's shoulder: its label to the right
        ax.annotate(
            a.text,
            (a.x, a.y),
            xytext=(dx, 12),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="x-small",
            arrowprops=arrow,
        )
    if plot.secondary_x is not None:
        scale, offset, label = plot.secondary_x
        sec = ax.secondary_xaxis(
            "top", functions=(lambda e: e * scale + offset, lambda a: (a - offset) / scale)
        )
        sec.set_xlabel(label, fontsize="small")


def _series(ax, plot: PlotData, s: Series) -> None:
    x, y = _x(plot, s.x), np.asarray(s.y, dtype=float)
    if s.style == "step":
        ax.stairs(y, x, label=s.name, color=s.color or "0.2", linewidth=1.0)
    elif s.style == "points":
        yerr = None if s.yerr is None else np.nan_to_num(np.asarray(s.yerr, dtype=float))
        face = "none" if s.hollow else None
        size = {".": 3, "_": 16}.get(s.marker, 5)
        ax.errorbar(
            x,
            y,
            yerr=yerr,
            fmt=s.marker,
            markersize=size,
            capsize=0 if size < 4 else 2,
            elinewidth=0.8,
            label=s.name,
            color=s.color,
            mfc=face,
        )
    elif s.style == "rug":
        ax.plot(
            x,
            np.full(len(y), 0.03),
            s.marker,
            color=s.color or "C3",
            markersize=7,
            transform=ax.get_xaxis_transform(),
            label=s.name,
            clip_on=False,
        )
    else:
        width = 1.6 if s.linestyle == "-" else 1.0
        ax.plot(x, y, linestyle=s.linestyle, linewidth=width, color=s.color, label=s.name)


def _gainmap(fig, ax, plot: PlotData) -> None:
    from matplotlib.patches import Rectangle

    image = np.asarray(plot.image, dtype=float)
    extent = plot.extent or (0.0, image.shape[1], 0.0, image.shape[0])
    finite = image[np.isfinite(image)]
    spread = max(float(np.max(np.abs(finite - 1.0))), 0.02) if finite.size else 0.1
    im = ax.imshow(
        np.ma.masked_invalid(image),
        origin="lower",
        extent=extent,
        cmap="coolwarm",
        vmin=1.0 - spread,
        vmax=1.0 + spread,
        aspect="equal",
    )
    cax = fig.add_axes((0.86, ax.get_position().y0, 0.025, ax.get_position().height))
    fig.colorbar(im, cax=cax, label="relative gain")
    ny, nx = image.shape
    x0, x1, y0, y1 = extent
    wx, wy = (x1 - x0) / nx, (y1 - y0) / ny
    for ix, iy in plot.hatched:
        cell = Rectangle(
            (x0 + ix * wx, y0 + iy * wy),
            wx,
            wy,
            fill=False,
            hatch="//",
            edgecolor="0.7",
            linewidth=0.0,
        )
        ax.add_patch(cell)
    text = plot.cell_text or [["" for _ in range(nx)] for _ in range(ny)]
    bbox = {"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1}
    for iy in range(ny):
        for ix in range(nx):
            failed = not np.isfinite(image[iy, ix])
            ax.text(
                x0 + (ix + 0.5) * wx,
                y0 + (iy + 0.5) * wy,
                text[iy][ix],
                ha="center",
                va="center",
                fontsize="xx-small" if failed else "x-small",
                color="C3" if failed else "k",
                bbox=bbox,
            )
