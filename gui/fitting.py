"""Calibration tasks in a QThreadPool: the GUI thread only submits them and takes the results."""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal


class _Signals(QObject):
    done = pyqtSignal(int, object)  # (stream slot, result)
    failed = pyqtSignal(int, str)  # (stream slot, error)


class _Task(QRunnable):
    def __init__(self, slot: int, fn: Callable[[], object], signals: _Signals) -> None:
        super().__init__()
        self.slot, self.fn, self.signals = slot, fn, signals

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # a failed fit must never take the monitor down
            self.signals.failed.emit(self.slot, f"{type(exc).__name__}: {exc}")
            return
        self.signals.done.emit(self.slot, result)


class FitRunner(QObject):
    """Runs tasks on a small private pool; results arrive as queued signals on the GUI thread."""

    def __init__(self, threads: int = 1) -> None:
        super().__init__()
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(max(1, threads))
        self.signals = _Signals()
        self.done = self.signals.done
        self.failed = self.signals.failed
        self.submitted = 0

    def submit(self, slot: int, fn: Callable[[], object]) -> None:
        self.submitted += 1
        self.pool.start(_Task(slot, fn, self.signals))

    def wait(self, ms: int = 10000) -> bool:
        return self.pool.waitForDone(ms)
