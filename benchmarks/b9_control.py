"""B9: run control under load: round trips of ``status``, ``start``, ``stop`` to ``agetdaq serve``.

The BEC emulator runs in its own process, ``agetdaq serve`` (the DAQ server as the shift crew runs
it: run control served by a thread of its own, commands carried out by the engine thread) in a
second, a client here. Cases: full readout offered above the GbE line rate (credit window 256/32
frames, as B6), and a zero-suppressed burst (the emulator as fast as it goes). Each cycle: start,
``status`` every 20 ms while the data flows, stop; the round trip of every request is measured
(a long command is acknowledged at once, ``pending``: its end shows in the status, and the time
to ``running`` / back to ``configured`` is reported too). Target: p99 <= 100 ms for each kind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.b6_end_to_end import FULL_SCRIPT, ZS_SCRIPT
from benchmarks.common import make_row
from benchmarks.daqrun import EmulatorProcess

ID = "B9"
TARGET_P99_MS = 100.0
LIMIT_S = 120.0  # every wait of this benchmark ends by then


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(client: Any, cmd: str, **fields: Any) -> tuple[float, dict]:
    t = time.perf_counter()
    reply = client.request(cmd, **fields)
    return (time.perf_counter() - t) * 1e3, reply


def _until(client: Any, state: str, limit_s: float) -> float:
    """Seconds until the status says ``state`` (inf if not within limit_s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if client.request("status").get("state") == state:
            return time.monotonic() - t0
        time.sleep(0.01)
    return float("inf")


def run_case(script: str, burst: bool, cycles: int, seconds: float, work: Path) -> dict:
    from agetdaq.readout.transport.control import ControlClient

    (work / "case.txt").write_text(script)
    control = f"tcp://127.0.0.1:{_free_port()}"
    times: dict[str, list[float]] = {"status": [], "start": [], "stop": []}
    to_running, to_configured, events, errors = [], [], [], []
    with EmulatorProcess(seed=1, bank=64, faults={"burst": True} if burst else None) as emu:
        cmd = [sys.executable, "-m", "agetdaq", "serve", "--board", emu.bec, "--control", control,
               "--publish", f"tcp://127.0.0.1:{_free_port()}", "--data-dir", str(work)]  # fmt: skip
        log = (work / "serve.log").open("w")
        serve = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        client = ControlClient(control, timeout_ms=10_000)
        try:
            if _until(client, "idle", LIMIT_S) == float("inf"):
                raise RuntimeError(f"agetdaq serve did not come up (see {work}/serve.log)")
            reply = client.request("configure", script="case.txt", wait=True)
            if not reply.get("ok"):
                raise RuntimeError(f"configure refused: {reply}")
            for _ in range(cycles):
                ms, reply = _timed(client, "start", run_type="background", comment="B9")
                times["start"].append(ms)
                errors += [] if reply.get("ok") else [reply.get("error")]
                to_running.append(_until(client, "running", LIMIT_S))
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    ms, st = _timed(client, "status")
                    times["status"].append(ms)
                    time.sleep(0.02)
                events.append(st.get("events", 0))
                ms, reply = _timed(client, "stop")
                times["stop"].append(ms)
                errors += [] if reply.get("ok") else [reply.get("error")]
                to_configured.append(_until(client, "configured", LIMIT_S))
        finally:
            client.close()
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait(10)
            log.close()
    return {"times": times, "to_running": to_running, "to_configured": to_configured,
            "events": events, "errors": errors}  # fmt: skip


def _p99(v: list[float]) -> float:
    return float(np.percentile(v, 99)) if v else float("nan")


def run(quick: bool) -> list[dict[str, Any]]:
    cycles, seconds = (3, 3.0) if quick else (10, 6.0)
    window, threshold = int(os.environ.get("B6_WINDOW", 256)), int(os.environ.get("B6_THR", 32))
    full = FULL_SCRIPT.format(window=window, threshold=threshold, limit="0x0")
    zs = ZS_SCRIPT.format(window=window, threshold=threshold, limit=7)
    cases = (("full readout above the line rate", full, False), ("ZS burst", zs, True))
    rows: list[dict[str, Any]] = []
    for label, script, burst in cases:
        with tempfile.TemporaryDirectory(prefix="b9-") as tmp:
            r = run_case(script, burst, cycles, seconds, Path(tmp))
        t = r["times"]
        print(f"B9 {label}: round trips ms: status p50 {np.median(t['status']):.1f} "
              f"p99 {_p99(t['status']):.1f} max {max(t['status']):.1f} ({len(t['status'])}); "
              f"start {[round(x) for x in t['start']]}; stop {[round(x) for x in t['stop']]}; "
              f"to running {[round(x, 2) for x in r['to_running']]} s; to configured "
              f"{[round(x, 2) for x in r['to_configured']]} s; events per cycle {r['events']}; "
              f"errors {r['errors']}")  # fmt: skip
        for cmd in ("status", "start", "stop"):
            v = t[cmd]
            row = make_row(ID, f"{label}: {cmd} round trip p99 ({len(v)} requests, max "
                           f"{max(v):.0f} ms)", _p99(v), "ms", target=TARGET_P99_MS,
                           target_on="value", higher_is_better=False)  # fmt: skip
            row["met"] = bool(row["met"] and not r["errors"])
            rows.append(row)
        rows.append(make_row(ID, f"{label}: stop -> configured (drain, close), median",
                             float(np.median(r["to_configured"])), "s"))  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
