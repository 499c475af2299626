"""Plot data of the calibration reports: what a figure shows, as plain data (no plotting
library). The figures are made by spectrumplot.py (a spectrum and its fit), trendplot.py (gain,
resolution and threshold against time) and mapplot.py (the gain map); ``render_png`` hands a
PlotData to a renderer (plots.py: matplotlib).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Numpy scalars/arrays to Python, NaN and inf to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Series:
    """One curve: ``style`` is "step" (histogram, x are the len(y)+1 edges), "line", "points"
    (with optional ``yerr``) or "rug" (markers at the bottom of the axes, y ignored)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    style: str = "line"
    yerr: np.ndarray | None = None
    color: str | None = None
    marker: str = "o"
    linestyle: str = "-"
    hollow: bool = False


@dataclass
class Mark:
    """A vertical line across the axes with its label."""

    x: float
    label: str
    color: str = "0.35"
    linestyle: str = ":"


@dataclass
class Label:
    """A text pointing at a data position (a peak)."""

    x: float
    y: float
    text: str


@dataclass
class PlotData:
    """Everything needed to draw one figure, without a plotting library."""

    kind: str  # "spectrum", "trend" or "gainmap"
    title: str
    x_label: str = ""
    y_label: str = ""
    series: list[Series] = field(default_factory=list)
    image: np.ndarray | None = None  # (ny, nx), row 0 at the bottom
    extent: tuple[float, float, float, float] | None = None  # x0, x1, y0, y1
    notes: list[str] = field(default_factory=list)  # in a box on the axes
    footer: list[str] = field(default_factory=list)  # explanations under the axes
    marks: list[Mark] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    x_time: bool = False  # x are unix seconds: drawn as UTC dates
    span: tuple[float, float] | None = None  # shaded x range (the fit window)
    span_label: str = ""
    secondary_x: tuple[float, float, str] | None = None  # top axis = scale * x + offset, label
    x_range: tuple[float, float] | None = None
    cell_text: list[list[str]] | None = None  # gain map: text per cell, row iy
    hatched: list[tuple[int, int]] = field(default_factory=list)  # gain map: (ix, iy)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("series", "marks", "labels")}
        d["series"] = [s.__dict__ for s in self.series]
        d["marks"] = [m.__dict__ for m in self.marks]
        d["labels"] = [a.__dict__ for a in self.labels]
        return json_safe(d)


# failure reason pattern -> (a few words with the figure, the kind of failure)
_REASONS = (
    (r"too few counts \((\d+) <", r"\1 X-rays", "too few X-rays"),
    (r"too few X-rays in this part \((\d+) <", r"\1 X-rays", "too few X-rays"),
    (r"^empty spectrum", "no X-ray", "no X-ray"),
    (r"K-alpha peak not significant \(([\d.]+) sigma\)", r"peak \1 σ", "peak not significant"),
    (r"^no significant peak", "no peak", "no peak"),
    (r"^no K-alpha peak standing out", "no peak", "no peak"),
    (r"^poor fit quality", "bad χ²", "bad chi2"),
    (r"^not one line", "not one line", "not one line"),
    (r"^gain changes by ([+-][\d.]+) ", r"step \1 %", "gain step inside"),
    (r"^gain not constant", "gain moved", "gain step inside"),
    (r"at its fit limit", "fit limit", "fit at a limit"),
)


def short_reason(reason: str) -> str:
    """A few words for a failure reason (gain map cells, plot markers)."""
    for pattern, short, _ in _REASONS:
        m = re.search(pattern, reason)
        if m:
            return m.expand(short) if "\\" in short else short
    return " ".join(reason.split()[:2]) or "failed"


def reason_kind(reason: str) -> str:
    """The kind of a failure reason, without its figures (to group failures)."""
    for pattern, _, kind in _REASONS:
        if re.search(pattern, reason):
            return kind
    return " ".join(reason.split()[:3]) or "failed"


Renderer = Callable[[PlotData, Path], None]


def render_png(plot: PlotData, path: str | Path, renderer: Renderer) -> Path:
    """Draw ``plot`` into ``path`` with ``renderer(plot, path)``; checks a file was written."""
    path = Path(path)
    renderer(plot, path)
    if not path.is_file():
        raise RuntimeError(f"renderer {renderer!r} wrote no file at {path}")
    return path
