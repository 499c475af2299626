"""Start the monitor from parsed command-line options (``agetdaq gui``, readout/cli/gui.py)."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace

from PyQt6.QtCore import QEventLoop, QTimer
from PyQt6.QtWidgets import QApplication

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import SourceWorker, StreamWorker
from agetdaq.protocol.mapping import MappingError, StripMapping
from agetdaq.readout.config import ConfigError

DEFAULT_STREAM = "tcp://127.0.0.1:5556"
DEFAULT_CONTROL = "tcp://127.0.0.1:5555"


class OptionError(ValueError):
    """Command-line options that do not fit together."""


def make_sources(
    args: argparse.Namespace, mapping: StripMapping, config: MonitorConfig
) -> list[tuple[SourceWorker, ControlWorker | None]]:
    """Workers of ``--connect`` (paired in order with ``--control``) and ``--replay``."""
    connects = list(args.connect or [])
    controls = list(args.control or [])
    replays = list(args.replay or [])
    if not connects and not replays:
        connects = [DEFAULT_STREAM]
        controls = controls or [DEFAULT_CONTROL]
    if len(controls) > len(connects):
        raise OptionError("more --control than --connect addresses (they pair up in order)")
    out: list[tuple[SourceWorker, ControlWorker | None]] = []
    for i, address in enumerate(connects):
        worker = StreamWorker(address, stale_after_s=config.stale_after_s)
        control = ControlWorker(controls[i]) if i < len(controls) else None
        out.append((worker, control))
    if replays:  # the DAQ's analysis code (scipy fits): imported only for a replay
        from agetdaq.gui.replay import ReplayWorker
    for path in replays:
        loop = bool(getattr(args, "loop", False))
        out.append((ReplayWorker(path, args.speed, loop=loop), None))
    return out


def unreadable_replay(paths: list[str] | None) -> str | None:
    """Why one of the ``--replay`` files cannot be replayed (None: all open as run files)."""
    if not paths:
        return None
    from agetdaq.gui.recorded import RecordedRun, RunFileError

    for path in paths:
        try:
            RecordedRun(path).close()
        except RunFileError as exc:
            return str(exc)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return None


def build(args: argparse.Namespace, defer_views: bool = False) -> MainWindow:
    """The window with its workers (not started); OptionError / ConfigError / MappingError.
    ``defer_views``: only the first tab is built (``MainWindow.finish_build`` builds the rest)."""
    config = MonitorConfig.load(args.config)
    if args.redraw_hz is not None:
        if args.redraw_hz <= 0:
            raise OptionError("--redraw-hz must be > 0")
        config = replace(config, redraw_hz=args.redraw_hz)
    mapping = StripMapping.load(args.mapping) if args.mapping else StripMapping.default()
    rules = load_rules(args.alarms)
    sources = make_sources(args, mapping, config)
    snapshots = getattr(args, "snapshot_dir", None) or config.logbook_dir
    return MainWindow(sources, mapping, config, rules, snapshots, defer_views)


def run(args: argparse.Namespace) -> int:
    """Run the GUI until its window closes (or after ``--screenshot``); returns the exit code.
    Ctrl-C (SIGINT) closes it with exit 0 at any moment, also while it is still starting."""
    if args.screenshot and args.after is None:
        args.after = 3.0
    state: dict = {"window": None, "interrupted": False}

    def interrupt(*_: object) -> None:
        state["interrupted"] = True
        if state["window"] is not None:
            state["window"].close()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        return _show(args, state)
    finally:
        signal.signal(signal.SIGINT, previous)


def _show(args: argparse.Namespace, state: dict) -> int:
    problem = unreadable_replay(args.replay)
    if problem:  # before any window: a file that is not there is a failure, not a picture
        print(f"agetdaq gui: --replay {problem}", file=sys.stderr)
        return 1
    _app = QApplication.instance() or QApplication(sys.argv[:1])  # must outlive the window
    try:
        window = build(args, defer_views=True)
    except (OptionError, ConfigError, MappingError, ValueError, OSError) as exc:
        print(f"agetdaq gui: {exc}", file=sys.stderr)
        return 2
    state["window"] = window
    result = {"code": 0}
    tab = getattr(args, "tab", None)
    if tab:
        titles = [window.tabs.tabText(i).lower() for i in range(window.tabs.count())]
        match = [i for i, t in enumerate(titles) if t.startswith(tab.lower())]
        if not match:
            print(f"agetdaq gui: no tab {tab!r}; tabs: {', '.join(titles)}", file=sys.stderr)
            return 2
        window.tabs.setCurrentIndex(match[0])
    if state["interrupted"]:  # Ctrl-C while starting
        return 0
    window.show()
    _app.processEvents()  # the first frame, before the other tabs are built
    window.finish_build()
    window.start()
    if args.screenshot:

        def grab() -> None:
            window.redraw(force=True)
            if not window.grab().save(str(args.screenshot), "PNG"):
                print(f"agetdaq gui: cannot write {args.screenshot}", file=sys.stderr)
                result["code"] = 1
            window.close()

        QTimer.singleShot(int(1000 * args.after), grab)
    quit_after = getattr(args, "quit_after", None)
    if quit_after is not None:
        QTimer.singleShot(int(1000 * quit_after), window.close)
    keepalive = QTimer()  # lets Python see Ctrl-C while Qt runs
    keepalive.timeout.connect(lambda: None)
    keepalive.start(200)
    # a local loop that ends when the window closes (QApplication.quit would also end any
    # later event loop of a process that embeds the monitor, e.g. a test session)
    loop = QEventLoop()
    window.closed.connect(loop.quit)
    if window.isVisible() and not state["interrupted"]:
        loop.exec()
    keepalive.stop()
    window.shutdown()
    return result["code"]
