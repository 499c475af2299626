"""The main window: one model per source, a selector, the banner and the view tabs.

Workers (live stream or replay) and control workers run in their own threads and talk to the
window only through queued signals. Redraws are capped at ``redraw_hz`` but start at once when
data arrives after a quiet period (low latency); only the banner and the visible tab redraw.
A 4 Hz tick evaluates the alarm rules and keeps time-dependent views fresh. The window computes
nothing of the data: fits and histograms are the DAQ's (live or replayed), shown as they arrive.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PyQt6.QtCore import QTimer, pyqtSignal
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QApplication,
    QComboBox,
    QLabel,
    QMainWindow,
    QPushButton,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui.alarms import Rule
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.model import LinkInfo, StreamModel
from agetdaq.gui.snapshot import save_snapshot, summary_text, tab_stem
from agetdaq.gui.views import VIEWS, BannerView, View
from agetdaq.gui.worker import SourceWorker
from agetdaq.protocol.mapping import StripMapping

TICK_MS = 250
BEEP_REPEAT_S = 30.0


@dataclass
class Source:
    """One detector line: its data worker, its model and (optionally) its control socket."""

    worker: SourceWorker
    model: StreamModel
    control: ControlWorker | None = None


class MainWindow(QMainWindow):
    closed = pyqtSignal()

    def __init__(
        self,
        sources: list[tuple[SourceWorker, ControlWorker | None]],
        mapping: StripMapping | None = None,
        config: MonitorConfig | None = None,
        rules: list[Rule] | None = None,
        snapshot_dir: str | Path = "snapshots",
        defer_views: bool = False,
        views: Sequence[type[View]] = VIEWS,
    ) -> None:
        """``views``: the tabs in order (default :data:`~agetdaq.gui.views.VIEWS`); a site's own
        view plugin is one more class here."""
        super().__init__()
        self.view_classes = tuple(views)
        if not sources:
            raise ValueError("the monitor needs at least one source")
        self.mapping = mapping or StripMapping.default()
        self.config = config or MonitorConfig()
        self.snapshot_dir = Path(snapshot_dir)
        self.muted = False
        self.sources: list[Source] = []
        for slot, (worker, control) in enumerate(sources):
            model = StreamModel(worker.address, self.mapping, self.config, rules)
            worker.slot = slot
            worker.batch.connect(self._on_batch)
            worker.link.connect(self._on_link)
            if control is not None:
                control.slot = slot
                control.reply.connect(self._on_reply)
            self.sources.append(Source(worker, model, control))
        self.selected = 0
        self.redraw_ms: list[float] = []
        self._last_redraw = 0.0
        self._last_beep = -BEEP_REPEAT_S
        self._pending: list[tuple[int, type[View]]] = []  # tabs built by finish_build()
        self._build(defer_views)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.timeout.connect(self.redraw)
        self._tick_timer = QTimer(self)
        self._tick_timer.timeout.connect(self.tick)

    # ---- construction -------------------------------------------------------------------------

    def _build(self, defer: bool) -> None:
        self.setWindowTitle("agetdaq monitor")
        bar = QToolBar("main")
        self.addToolBar(bar)
        bar.addWidget(QLabel(" detector line: "))
        self.selector = QComboBox()
        for s in self.sources:
            self.selector.addItem(s.model.name)
        self.selector.currentIndexChanged.connect(self.select)
        bar.addWidget(self.selector)
        self.snapshot_button = QPushButton("Snapshot for the logbook")
        self.snapshot_button.setToolTip(f"every tab as PNG + a text summary in {self.snapshot_dir}")
        self.snapshot_button.clicked.connect(self.snapshot)
        bar.addWidget(self.snapshot_button)
        QShortcut(QKeySequence("Ctrl+Q"), self, activated=self.close)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(2, 2, 2, 2)
        self.banner = BannerView(self)
        layout.addWidget(self.banner.widget)
        self.tabs = QTabWidget()
        self.views: list[View] = []
        for i, cls in enumerate(self.view_classes):
            if defer and i > 0:  # the first frame shows before the other tabs are built
                self.tabs.addTab(QLabel("  building the view ..."), cls.title)
                self._pending.append((i, cls))
                continue
            view = cls(self)
            self.views.append(view)
            self.tabs.addTab(view.widget, view.title)
        self.tabs.currentChanged.connect(lambda _i: self.schedule_redraw())
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.resize(1400, 900)

    def finish_build(self) -> None:
        """Build the tabs left for after the first frame (``defer_views``)."""
        current = self.tabs.currentIndex()
        for i, cls in self._pending:
            view = cls(self)
            self.views.insert(i, view)
            placeholder = self.tabs.widget(i)
            self.tabs.removeTab(i)
            self.tabs.insertTab(i, view.widget, view.title)
            placeholder.deleteLater()
        self._pending = []
        self.tabs.setCurrentIndex(current)
        self.schedule_redraw()

    def view(self, cls: type[View]) -> View:
        return next(v for v in self.views if isinstance(v, cls))

    def start(self) -> None:
        """Start the workers and timers (after the window exists)."""
        for s in self.sources:
            s.worker.start()
            if s.control is not None:
                s.control.start()
        self._tick_timer.start(TICK_MS)
        self.schedule_redraw()

    def shutdown(self) -> None:
        self._tick_timer.stop()
        self._redraw_timer.stop()
        for s in self.sources:
            s.worker.stop()
            if s.control is not None:
                s.control.stop()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()

    # ---- Host interface -----------------------------------------------------------------------

    @property
    def model(self) -> StreamModel:
        return self.sources[self.selected].model

    def control(self, cmd: str, **fields: object) -> bool:
        ctl = self.sources[self.selected].control
        return ctl is not None and ctl.submit(cmd, **fields)

    def control_state(self) -> tuple[bool, bool]:
        ctl = self.sources[self.selected].control
        if ctl is None:
            return False, False
        return ctl.reachable is True, ctl.busy

    def control_address(self) -> str | None:
        ctl = self.sources[self.selected].control
        return None if ctl is None else ctl.address

    def schedule_redraw(self) -> None:
        if self._redraw_timer.isActive():
            return
        period = 1.0 / max(self.config.redraw_hz, 0.1)
        delay = max(0.0, self._last_redraw + period - time.monotonic())
        self._redraw_timer.start(int(delay * 1000))

    # ---- inputs -------------------------------------------------------------------------------

    def _on_batch(self, slot: int, batch: list) -> None:
        src = self.sources[slot]
        for msg in batch:
            src.model.apply(msg)
            if slot == self.selected:
                for v in self.views:
                    v.on_message(msg)
        src.worker.acknowledge()
        self._label_source(slot)
        if slot == self.selected:
            self.schedule_redraw()

    def _label_source(self, slot: int) -> None:
        """Selector entry: the line's name, marked with its worst active alarm."""
        model = self.sources[slot].model
        worst = model.alarms.worst()
        text = model.name + (f"  [{worst.upper()}]" if worst else "")
        if self.selector.itemText(slot) != text:
            self.selector.setItemText(slot, text)

    def _on_link(self, slot: int, info: LinkInfo) -> None:
        self.sources[slot].model.set_link(info)
        if slot == self.selected:
            self.schedule_redraw()

    def _on_reply(self, slot: int, cmd: str, reply: dict) -> None:
        if slot != self.selected:
            return
        for v in self.views:
            v.on_control_reply(cmd, reply)
        self.schedule_redraw()

    def select(self, slot: int) -> None:
        """Show another detector line in every view."""
        if not 0 <= slot < len(self.sources) or slot == self.selected:
            return
        self.selected = slot
        for v in [self.banner, *self.views]:
            v.model_changed()
        self.setWindowTitle(f"agetdaq monitor - {self.model.name}")
        self.redraw()

    # ---- periodic work ------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        fired = []
        for slot, s in enumerate(self.sources):
            fired += s.model.evaluate_alarms(now)
            self._label_source(slot)
        unacked = any(
            a.severity == "alarm" and not a.acknowledged
            for s in self.sources
            for a in s.model.alarms.active
        )
        if not self.muted and (fired or (unacked and now - self._last_beep >= BEEP_REPEAT_S)):
            QApplication.beep()
            self._last_beep = now
        self.schedule_redraw()

    def redraw(self, force: bool = False) -> float:
        """Redraw the banner and the visible views whose data changed; returns the time in ms."""
        t0 = time.perf_counter()
        now = time.monotonic()
        heavy = False
        for v in [self.banner, *self.views]:
            if force or ((v is self.banner or v.is_visible()) and v.needs_redraw(now)):
                v.draw(now)
                heavy = heavy or v is not self.banner
        ms = 1000.0 * (time.perf_counter() - t0)
        if heavy:  # the banner alone is too cheap to count against the rate cap
            self._last_redraw = time.monotonic()
        self.redraw_ms.append(ms)
        del self.redraw_ms[:-200]
        return ms

    # ---- snapshot -----------------------------------------------------------------------------

    def snapshot_text(self) -> str:
        lines: list[str] = []
        for v in self.views:
            lines += v.summary()
        return summary_text(self.model, lines)

    def snapshot(self) -> tuple[list[Path], Path] | None:
        """Every tab as a PNG of the window and the text summary, in the logbook directory."""
        current = self.tabs.currentIndex()
        stem = time.strftime("snapshot-%Y%m%d-%H%M%S")
        pngs: list[Path] = []
        try:
            for i in range(self.tabs.count()):
                self.tabs.setCurrentIndex(i)
                QApplication.processEvents()
                self.redraw(force=True)
                name = tab_stem(stem, i, self.tabs.tabText(i))
                png, txt = save_snapshot(self, self.snapshot_dir, self.snapshot_text(), name)
                pngs.append(png)
            txt = txt.rename(txt.with_name(f"{stem}.txt"))
        except OSError as exc:
            self.statusBar().showMessage(f"snapshot failed: {exc}", 10000)
            return None
        finally:
            self.tabs.setCurrentIndex(current)
        self.statusBar().showMessage(
            f"snapshot saved: {len(pngs)} tabs and {txt.name} in {self.snapshot_dir}", 10000
        )
        return pngs, txt
