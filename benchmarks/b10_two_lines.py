"""B10: two detector lines on one machine: two emulators, two DAQ processes, two subscribers.

Each line is what a DAQ PC runs per detector: a BEC emulator process, ``agetdaq run`` (its own
process: capture, data path, writer, stream) and a subscriber process taking every message (the
GUI's part). Both lines run at once, full readout offered above the GbE line rate (credit window
256/32 frames, as B6), then both with zero-suppressed bursts. Per line: events/s, the DAQ
process's CPU per event and its cores; from them, the cores one line needs at its line rate
(446 full events/s, 130 000 ZS events/s) and so a DAQ PC for 8 lines (docs/PERFORMANCE.md).
On this 2-core machine the six processes share two cores: the rates follow the load, the CPU per
event much less.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.b6_end_to_end import FULL_SCRIPT, LINE_EVENTS_S_FULL, ZS_SCRIPT
from benchmarks.common import make_row
from benchmarks.daqrun import EmulatorProcess, process_cpu_s

ID = "B10"
LINE_EVENTS_S_ZS = 130_000  # a ZS X-ray event (~0.9 kB) at the GbE line rate


def _subscriber(address: str, stop: Any, out: Any) -> None:
    from agetdaq.readout.transport.stream import Subscriber

    sub = Subscriber(address)
    n = 0
    while not stop.is_set():
        if sub.recv(50) is not None:
            n += 1
    out.put(n)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(path: Path) -> int:
    from agetdaq.readout.store.reader import RunFile

    with RunFile(path) as f:
        return f.n_events


def run_lines(script: str, burst: bool, seconds: float, work: Path, n_lines: int = 2) -> list:
    """The lines at once; per line (events, seconds and DAQ CPU s from its run start to its end,
    stream messages received)."""
    ctx = mp.get_context("spawn")
    (work / "line.txt").write_text(script)
    faults = {"burst": True} if burst else None
    emus = [EmulatorProcess(seed=1 + k, bank=64, faults=faults) for k in range(n_lines)]
    procs, subs, logs = [], [], []
    stop = ctx.Event()
    outs = [ctx.Queue() for _ in range(n_lines)]
    try:
        for e in emus:
            e.__enter__()
        for k, e in enumerate(emus):
            stream = f"tcp://127.0.0.1:{_free_port()}"
            p = ctx.Process(target=_subscriber, args=(stream, stop, outs[k]))
            p.start()
            subs.append(p)
            logs.append((work / f"line{k}.log").open("w"))
            cmd = [sys.executable, "-m", "agetdaq", "run", "--board", e.bec, "--script",
                   str(work / "line.txt"), "--seconds", str(seconds), "--publish", stream,
                   "--data-dir", str(work / f"d{k}"), "-o", str(work / f"line{k}.h5")]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logs[k]))
        t0 = time.monotonic()
        cpu = [0.0] * n_lines  # the last reading before the process ends
        began: list[tuple[float, float] | None] = [None] * n_lines  # (time, CPU) at run start
        ended = [0.0] * n_lines
        while any(p.poll() is None for p in procs) and time.monotonic() - t0 < seconds + 180:
            for k, p in enumerate(procs):
                if p.poll() is not None:
                    continue
                try:
                    cpu[k] = process_cpu_s(p.pid)
                except OSError:
                    continue
                ended[k] = time.monotonic()
                if began[k] is None and (work / f"line{k}.h5").exists():
                    began[k] = (ended[k], cpu[k])  # warmed up: the run file is open
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        stop.set()
        got = []
        for q, sub in zip(outs, subs):
            sub.join(10)
            got.append(q.get(timeout=10) if not q.empty() else 0)
        for e in emus:
            e.__exit__(None, None, None)
        for f in logs:
            f.close()
    out = []
    for k in range(n_lines):
        t, c = began[k] or (t0, 0.0)
        out.append((_events(work / f"line{k}.h5"), max(ended[k] - t, 1e-3), cpu[k] - c, got[k]))
    return out


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 8.0 if quick else 30.0
    window, threshold = int(os.environ.get("B6_WINDOW", 256)), int(os.environ.get("B6_THR", 32))
    cases = (
        ("full readout", FULL_SCRIPT.format(window=window, threshold=threshold, limit="0x0"),
         False, LINE_EVENTS_S_FULL, 1e3, "ms/event"),
        ("ZS burst", ZS_SCRIPT.format(window=window, threshold=threshold, limit=7), True,
         LINE_EVENTS_S_ZS, 1e6, "us/event"),
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    for label, script, burst, line_rate, scale, unit in cases:
        with tempfile.TemporaryDirectory(prefix="b10-") as tmp:
            lines = run_lines(script, burst, seconds, Path(tmp))
        for k, (events, secs, cpu, msgs) in enumerate(lines):
            per = cpu / max(events, 1)
            print(f"B10 {label} line {k}: {events} events in {secs:.0f} s ({events / secs:.0f}/s),"
                  f" DAQ process CPU {cpu:.1f} s ({cpu / secs:.2f} cores), {per * scale:.3g} "
                  f"{unit}, {msgs} stream messages")  # fmt: skip
            rows.append(make_row(ID, f"{label}, 2 lines at once: line {k} events/s",
                                 events / secs, "events/s"))  # fmt: skip
            rows.append(make_row(ID, f"{label}, 2 lines at once: line {k} DAQ process CPU per "
                                 "event", per * scale, unit))  # fmt: skip
            rows.append(make_row(ID, f"{label}: cores one line needs at its line rate "
                                 f"({line_rate:.0f} events/s), from line {k}", per * line_rate,
                                 "cores"))  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
