"""MEM-GUI: resident size of the monitor (``agetdaq gui``) over a long replay: it must not grow.

A calibration run (55Fe scenario, shipped ``calibration`` script) is recorded from the BEC emulator
(own process, benchmarks.daqrun.EmulatorProcess) by ``agetdaq run``. Then ``agetdaq gui --replay
RUN.h5 --speed 3 --loop`` runs as a process of its own (QT_QPA_PLATFORM=offscreen): the file is
replayed as one endless run (~100 processed events/s, sampled events with waveforms at 5 Hz). The
GUI process starts through this module's ``--child`` entry, which only adds a timer that brings
every tab to the front in turn (each ``CYCLE_S``), so that every view is drawn and painted, as a
shift crew clicking through the tabs would. Its VmRSS is read from /proc every second; marks at 1
and 10 minutes (quick mode: 20 s and 90 s). Row: RSS at the end / RSS at the first mark (target
<= 1.05: flat). The child prints the replay's progress every 10 s (passes over the file, messages
received, events shown), kept in the last row's ``series`` with the RSS samples.

``python -m benchmarks.memory_gui --child [--trace] -- gui ARGS`` runs the monitor with the tab
cycler; ``--trace`` adds tracemalloc's largest growths (Python allocations) to each progress line.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import make_row
from benchmarks.daqrun import EmulatorProcess, process_cpu_s, rss_mb

ID = "MEM-GUI"
TARGET_GROWTH = 1.05
SPEED = 3.0
CYCLE_S = 1.0
REPORT_S = 10.0


def record_run(work: Path, seconds: float) -> Path:
    """A calibration run file recorded by ``agetdaq run`` from the emulator (55Fe scenario)."""
    path = work / "calib.h5"
    with EmulatorProcess(scenario="calibration", seed=5, bank=64) as emu:
        cmd = [
            sys.executable, "-m", "agetdaq", "run", "--board", emu.bec, "--data-dir", str(work),
            "--script", "calibration", "--run-type", "calibration", "--seconds", str(seconds),
            "--output", str(path), "--comment", "MEM-GUI replay source",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300)
    if proc.returncode != 0 or not path.exists():
        raise RuntimeError(f"agetdaq run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return path


def gui_command(run_file: Path, work: Path, quit_after_s: float, trace: bool = False) -> list[str]:
    """The monitor process: ``agetdaq gui --replay ... --loop`` behind the tab cycler."""
    child = [sys.executable, "-m", "benchmarks.memory_gui", "--child"]
    if trace:
        child.append("--trace")
    return [*child, "--", "gui", "--replay", str(run_file), "--speed", f"{SPEED:g}", "--loop",
            "--quit-after", f"{quit_after_s:g}", "--snapshot-dir", str(work)]  # fmt: skip


def measure(first_s: float, last_s: float, work: Path, record_s: float) -> dict[str, Any]:
    run_file = record_run(work, record_s)
    log_path = work / "agetdaq.gui.log"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    trace = bool(os.environ.get("MEM_GUI_TRACE"))
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(gui_command(run_file, work, last_s + 60, trace), env=env,
                                stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        t0 = time.monotonic()
        samples: list[tuple[float, float]] = []
        cpu = 0.0
        try:
            while time.monotonic() - t0 < last_s and proc.poll() is None:
                time.sleep(1.0)
                try:
                    samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
                    cpu = process_cpu_s(proc.pid)
                except (OSError, RuntimeError):
                    break
        finally:
            proc.send_signal(signal.SIGINT)  # the monitor closes its window on Ctrl-C
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if not samples or samples[-1][0] < last_s - 2:
        raise RuntimeError(f"agetdaq gui ended early: {text[-2000:]}")
    progress = [ln for ln in text.splitlines() if ln.startswith("MEM-GUI child")]
    if not progress or " passes 0 " in progress[-1]:
        raise RuntimeError(f"the replay did not loop: {text[-2000:]}")
    first = min(samples, key=lambda s: abs(s[0] - first_s))[1]
    return {"first": first, "last": samples[-1][1], "peak": max(r for _, r in samples),
            "cpu_cores": cpu / samples[-1][0], "samples": samples, "progress": progress,
            "file_mb": run_file.stat().st_size / 1e6}  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    first_s, last_s = (20.0, 90.0) if quick else (60.0, 600.0)
    first_s = float(os.environ.get("MEM_GUI_FIRST_S", first_s))
    last_s = float(os.environ.get("MEM_GUI_LAST_S", last_s))
    record_s = 10.0 if quick else 30.0
    with tempfile.TemporaryDirectory(prefix="mem-gui-") as tmp:
        r = measure(first_s, last_s, Path(tmp), record_s)
    print(
        f"MEM-GUI: agetdaq gui RSS {r['first']:.1f} MB at {first_s:.0f} s, {r['last']:.1f} MB at "
        f"{last_s:.0f} s, peak {r['peak']:.1f} MB; CPU {r['cpu_cores']:.2f} core; replayed "
        f"file {r['file_mb']:.0f} MB ({record_s:.0f} s recorded) at x{SPEED:g}, looped"
    )
    step = max(1, len(r["samples"]) // 20)
    series = [(round(t), round(m, 1)) for t, m in r["samples"][::step]]
    print("MEM-GUI: RSS (s, MB): " + ", ".join(f"{t} {m}" for t, m in series))
    print("MEM-GUI: last child report: " + r["progress"][-1])
    rows = [
        make_row(ID, f"agetdaq gui RSS at {first_s:.0f} s (looped replay)", r["first"], "MB"),
        make_row(ID, f"agetdaq gui RSS at {last_s:.0f} s / at {first_s:.0f} s", r["last"], "MB",
                 reference=r["first"], ref_unit=f"MB at {first_s:.0f} s", target=TARGET_GROWTH,
                 higher_is_better=False),
        make_row(ID, "agetdaq gui RSS peak", r["peak"], "MB"),
        make_row(ID, "agetdaq gui CPU during the replay", r["cpu_cores"], "cores"),
    ]  # fmt: skip
    rows[1]["series"] = series
    rows[1]["progress"] = r["progress"]
    return rows


# ---- the monitor process ------------------------------------------------------------------


def _child(argv: list[str]) -> int:
    """``agetdaq gui`` with a timer that shows every tab in turn and reports."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.memory_gui --child")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--trace", action="store_true", help="report tracemalloc's top growths")
    ap.add_argument("cli", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    if args.trace:
        import tracemalloc

        tracemalloc.start(8)
    from PyQt6.QtCore import QTimer

    import agetdaq.gui.app
    from agetdaq.readout.cli import main as cli_main

    build = agetdaq.gui.app.build
    keep: list[Any] = []
    t0 = time.monotonic()

    def report(window: Any) -> None:
        m = window.model
        worker = window.sources[window.selected].worker
        passes = getattr(worker, "passes", -1)
        line = (f"MEM-GUI child t {time.monotonic() - t0:.0f} s passes {passes}"
                f" received {m.link.received} summary_events {m.summary_events} events_seen "
                f"{m.events_seen} calib_points {len(m.calib.trend)}"
                f" rss {rss_mb():.1f} MB")  # fmt: skip
        if args.trace:
            line += " | " + _trace_growth(keep)
        print(line, flush=True)

    def build_with_cycler(ns: argparse.Namespace, defer_views: bool = False) -> Any:
        window = build(ns, defer_views)
        cycle = QTimer(window)
        tabs, n_tabs = window.tabs, window.tabs.count()
        cycle.timeout.connect(lambda: tabs.setCurrentIndex((tabs.currentIndex() + 1) % n_tabs))
        cycle.start(int(CYCLE_S * 1000))
        reporter = QTimer(window)
        reporter.timeout.connect(lambda: report(window))
        reporter.start(int(REPORT_S * 1000))
        keep.extend((cycle, reporter))
        return window

    agetdaq.gui.app.build = build_with_cycler
    return cli_main(cli)


def _trace_growth(state: list[Any]) -> str:
    """The 3 allocation sites that grew most since the previous call (tracemalloc)."""
    import tracemalloc

    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    prev = next((s for s in state if isinstance(s, tracemalloc.Snapshot)), None)
    state[:] = [s for s in state if not isinstance(s, tracemalloc.Snapshot)] + [snap]
    if prev is None:
        return f"traced {sum(s.size for s in snap.statistics('filename')) / 1e6:.1f} MB"
    top = snap.compare_to(prev, "lineno")[:3]
    return "; ".join(
        f"{st.traceback[0].filename}:{st.traceback[0].lineno} {st.size_diff / 1e3:+.0f} kB"
        for st in top
    )


if __name__ == "__main__":
    if "--child" in sys.argv[1:2]:
        sys.exit(_child(sys.argv[1:]))
    for row in run(quick=True):
        print(row)
