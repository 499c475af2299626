"""Small widgets and plot helpers shared by the views: a label that elides instead of growing, an
axis that names strips (X0..X119, Y0..Y119), colour bars, legends in a cell of their own (off
the data) and aligned left axes."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QPainter
from PyQt6.QtWidgets import QLabel, QSizePolicy, QWidget

LEFT_AXIS_PX = 62  # width of every left axis of stacked plots, so their x axes line up


class ElidedLabel(QLabel):
    """A one-line label that never widens its layout: text that does not fit ends in '...'; the
    whole text is the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(20)

    def setText(self, text: str) -> None:
        if text != self.text():
            super().setText(text)
            self.setToolTip(text)

    def sizeHint(self) -> QSize:
        return QSize(40, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(20, super().minimumSizeHint().height())

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(rect, int(self.alignment() | Qt.AlignmentFlag.AlignVCenter), text)


class StripAxis(pg.AxisItem):
    """Bottom axis over strip indices: ticks read ``X0 .. X119`` / ``Y0 .. Y119`` (``names``:
    one name per integer position; beyond them the position itself)."""

    def __init__(self, names: list[str], orientation: str = "bottom") -> None:
        super().__init__(orientation)
        self.names = names

    def tickStrings(self, values, scale, spacing) -> list[str]:
        out = []
        for v in values:
            i = round(v)
            out.append(self.names[i] if abs(v - i) < 1e-6 and 0 <= i < len(self.names) else "")
        return out

    def tickValues(self, minVal, maxVal, size):
        """Ticks on strips whose number is a round multiple (X0, X40, X80, Y0, Y40, ...)."""
        levels = super().tickValues(minVal, maxVal, size)
        spacing = levels[0][0] if levels else 10.0
        step = next((s for s in STRIP_STEPS if s >= spacing), STRIP_STEPS[-1])
        lo, hi = max(0, int(np.ceil(minVal))), min(len(self.names) - 1, int(np.floor(maxVal)))
        ticks = [float(i) for i in range(lo, hi + 1) if _number(self.names[i]) % step == 0]
        minor = [float(i) for i in range(lo, hi + 1) if _number(self.names[i]) % (step // 2 or 1)
                 == 0] if step >= 10 else []  # fmt: skip
        return [(step, ticks), (step / 2, minor)]


def _number(name: str) -> int:
    digits = "".join(c for c in name if c.isdigit())
    return int(digits) if digits else -1


STRIP_STEPS = (1, 2, 5, 10, 20, 40, 60)


def strip_names(mapping, axis: str | None = None) -> list[str]:
    """Names of the mapping's strips in global order, or of one axis (positions 0..n-1)."""
    names = [mapping.name(i) for i in range(mapping.n_strips)]
    if axis is None:
        return names
    return [n for n in names if n.startswith(axis)]


def colour_bar(
    image: pg.ImageItem | list[pg.ImageItem], plot: pg.PlotItem, cmap: pg.ColorMap, label: str = ""
) -> pg.ColorBarItem:
    """A colour bar for ``image`` (or several sharing one scale) beside ``plot``; set the levels
    through the bar."""
    bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=cmap, label=label, interactive=False,
                          width=14, colorMapMenu=False)  # fmt: skip
    bar.setImageItem(image, insert_in=plot)
    return bar


def outside_legend(layout: pg.GraphicsLayout, row: int, col: int, **kw) -> pg.LegendItem:
    """A legend in a layout cell of its own (beside the plot, never on its data)."""
    legend = pg.LegendItem(frame=False, **kw)
    layout.addItem(legend, row=row, col=col)
    return legend


def align_left_axis(*plots: pg.PlotItem, width: int = LEFT_AXIS_PX) -> None:
    for p in plots:
        p.getAxis("left").setWidth(width)
