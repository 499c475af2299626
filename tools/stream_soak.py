"""The monitoring stream checked frame by frame for a long run (``make stream-soak``).

Real processes as in production: ``agetdaq emulate`` (the calibration scenario with a slow gain
drift) and ``agetdaq serve``; run control polled 4 times a second (as the GUI does) while one
calibration run after another streams. A subscriber runs every frame through
``readout/transport/streamcheck.py`` (docs/STREAM.md's contract). Exit 0 when the stream had no
malformed message and no gap, 1 otherwise; a JSON report either way.

    python tools/stream_soak.py --minutes 30 --json-out soak.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from agetdaq.readout.transport.control import ControlClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from daq_procs import DaqProcesses  # the tests' helpers (no pytest)
from stream_audit import AuditSubscriber

SCENARIO = """\
base = "gain-drift"
description = "stream soak: the gain falls to 70 % over 25 minutes"
[gain]
end = 0.7
delay_s = 60.0
duration_s = 1500.0
"""
SETTINGS = """\
[daq]
heartbeat_s = 1.0
"""
RUN_S = 300  # one calibration run after another, each this long


class Poller(threading.Thread):
    """Run control asked for the status ``rate_hz`` times a second; slow answers counted."""

    def __init__(self, address: str, rate_hz: float = 4.0, timeout_ms: int = 5000) -> None:
        super().__init__(daemon=True)
        self.client = ControlClient(address, timeout_ms=timeout_ms)
        self.period = 1.0 / rate_hz
        self.done = threading.Event()
        self.requests = 0
        self.failures = 0
        self.slowest_s = 0.0

    def run(self) -> None:
        while not self.done.wait(self.period):
            t0 = time.monotonic()
            try:
                ok = self.client.request("status").get("ok", False)
            except Exception:  # a timeout or a broken reply: counted, the soak goes on
                ok = False
            self.requests += 1
            self.failures += not ok
            self.slowest_s = max(self.slowest_s, time.monotonic() - t0)

    def close(self) -> None:
        self.done.set()
        self.join(10)
        self.client.close()


def soak(minutes: float, workdir: Path) -> dict:
    (workdir / "scenario.toml").write_text(SCENARIO)
    procs = DaqProcesses(workdir, str(workdir / "scenario.toml"), SETTINGS)
    sub = AuditSubscriber(procs.stream, record=False)
    sub.start()
    poller: Poller | None = None
    runs = 0
    refused: list[str] = []
    try:
        procs.start()
        procs.wait_ready()
        poller = Poller(procs.control)
        poller.start()
        end = time.monotonic() + 60 * minutes
        while time.monotonic() < end:
            seconds = max(5, min(RUN_S, int(end - time.monotonic())))
            reply = procs.request("start", run_type="calibration", comment="stream soak",
                                  seconds=seconds, wait=True, timeout_ms=120000)  # fmt: skip
            if not reply.get("ok"):
                refused.append(str(reply.get("error", reply)))
                time.sleep(5)
                continue
            runs += 1
            while time.monotonic() < end:
                if procs.request("status", 10000).get("state") != "running":
                    break
                time.sleep(1.0)
        procs.request("stop", wait=True, timeout_ms=60000)
        time.sleep(2.0)  # the last messages
    finally:
        if poller is not None:
            poller.close()
        procs.close()
        sub.close()
    a = sub.audit
    return {
        "minutes": minutes,
        "runs": runs,
        "refused": refused[:5],
        "messages": a.messages,
        "per_topic": dict(a.per_topic),
        "malformed": a.malformed,
        "gaps": a.gaps,
        "restarts": a.restarts,
        "problems": a.problems,
        "control_requests": poller.requests if poller else 0,
        "control_failures": poller.failures if poller else 0,
        "control_slowest_s": round(poller.slowest_s, 3) if poller else None,
        "ok": a.malformed == 0 and a.gaps == 0 and runs > 0 and a.messages > 0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--workdir", help="where the run files go (default: a temporary directory)")
    p.add_argument("--json-out", help="also write the report here")
    args = p.parse_args(argv)
    if not args.minutes > 0:
        p.error("--minutes must be > 0")
    with tempfile.TemporaryDirectory(prefix="agetdaq-stream-soak-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = soak(args.minutes, work)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
