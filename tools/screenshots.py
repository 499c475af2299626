"""``make screenshots``: every tab of the monitor from a real run, into docs/screenshots/.

The BEC emulator (55Fe over the whole area at 40 Hz whose gain falls from 100 % towards 80 % from
60 s after the emulator starts) and ``agetdaq serve`` run as child processes on free loopback
ports; the monitor drives them through its own run-control panel as a shift crew does: it waits
for the board to answer, acknowledges the start-up alarms (no DAQ yet), takes a short pedestal
run from its preset (so the pedestal table is in use), then a calibration run from its preset
(with the light ``run`` script: hit channels only, for a busy machine). The DAQ's gain reference
is that run's first good slice (the reference belongs to the run's readout), taken before the
drift starts, so the gain the pictures show (~0.85, a warning) is the emulated drift; the gain map
has 4 x 4 regions, enough X-rays each in two minutes. After ``--seconds`` of calibration every tab
is rendered (offscreen unless a display is wanted, 1600 x 1000) to ``<out>/<tab>.png``; the run is
then stopped and the run-control tab is shot once more with the end-of-run summary and the run
list (``run-control-end-of-run.png``). The children run in process groups of their own and are
always ended (as ``agetdaq demo`` does). On a loaded machine the DAQ may fall behind (alarms such
as "no new event" then say so, truthfully): look at the pictures before committing them.

    python tools/screenshots.py --out docs/screenshots [--seconds 120]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtWidgets import QApplication

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.views import AlarmsView, RunControlView
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import StreamWorker
from agetdaq.readout.cli.demo import Children, board_answers

AGETDAQ = [sys.executable, "-m", "agetdaq"]
SIZE = (1600, 1000)
PEDESTAL_EVENTS = 200
SCENARIO = """base = "gain-drift"
description = "55Fe at 40 Hz, gain 100 % -> 80 % (geometric) from t = 60 s in 120 s"
[source.fe55]
rate_hz = 40.0
[gain]
end = 0.8
delay_s = 60.0
duration_s = 120.0
"""
SETTINGS = """[calibration]
slice_xrays = 500
window_xrays = 1500
window_minutes = 1.0
map_n = 4
"""


class Failed(RuntimeError):
    """The run the pictures need did not happen."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tab_file(title: str) -> str:
    """``55Fe && gain`` -> ``55fe-gain.png``."""
    words = "".join(c if c.isalnum() else " " for c in title.replace("&&", "&").lower()).split()
    return "-".join(words or ["tab"]) + ".png"


class Session:
    """Emulator + DAQ server + the monitor's window (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children = Children()
        self.log = (workdir / "children.log").open("w")
        self.window: MainWindow | None = None

    def start(self) -> MainWindow:
        (self.workdir / "scenario.toml").write_text(SCENARIO)
        (self.workdir / "daq.toml").write_text(SETTINGS)
        bec = free_port(socket.SOCK_DGRAM)
        control = f"tcp://127.0.0.1:{free_port()}"
        stream = f"tcp://127.0.0.1:{free_port()}"
        out = {"stdout": self.log, "stderr": self.log}
        emulate = [*AGETDAQ, "emulate", "--board", f"127.0.0.1:{bec}",
                   "--scenario", str(self.workdir / "scenario.toml")]  # fmt: skip
        self.emulator = self.children.start("emulator", emulate, **out)
        self.bec_port = bec
        self.children.start("DAQ server", [
            *AGETDAQ, "serve", "--board", f"127.0.0.1:{bec}", "--control", control, "--publish",
            stream, "--data-dir", str(self.workdir / "data"), "--config",
            str(self.workdir / "daq.toml")], **out)  # fmt: skip
        ctl = ControlWorker(control, poll_s=0.5, timeout_ms=20000)
        w = MainWindow([(StreamWorker(stream), ctl)], None, MonitorConfig(), load_rules(),
                       snapshot_dir=self.workdir / "logbook")  # fmt: skip
        w.resize(*SIZE)
        w.show()
        w.start()
        self.window = w
        return w

    def wait(self, cond, limit_s: float, what: str) -> None:
        """Process Qt events until ``cond()`` (Failed after ``limit_s`` or when a child ends)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            QApplication.processEvents()
            if cond():
                return
            dead = self.children.dead()
            if dead:
                raise Failed(f"the {dead[0][0]} ended (exit code {dead[0][1]}) waiting for {what}")
            time.sleep(0.02)
        raise Failed(f"timed out after {limit_s:.0f} s waiting for {what}")

    def close(self) -> None:
        if self.window is not None:
            self.window.shutdown()
            self.window.close()
        self.children.stop_all()
        self.log.close()


def shoot(w: MainWindow, index: int, path: Path) -> Path:
    w.tabs.setCurrentIndex(index)
    for _ in range(5):
        QApplication.processEvents()
    w.redraw(force=True)
    QApplication.processEvents()
    if not w.grab().save(str(path), "PNG"):
        raise OSError(f"cannot write {path}")
    return path


def upload_failed(w: MainWindow) -> str:
    """Why the DAQ's pedestal upload failed ("" while it runs or when it worked)."""
    up = w.model.status.get("pedestal_upload")
    if isinstance(up, dict) and up.get("phase", "idle") == "idle" and up.get("outcome"):
        return "" if up.get("ok") else str(up.get("message") or up.get("outcome"))
    return ""


def take(session: Session, out: Path, seconds: float) -> list[Path]:
    w = session.start()
    rc = w.view(RunControlView)
    rc.ask = lambda *_: True  # the Stop confirmation, answered
    print("screenshots: waiting for the emulator and the DAQ server ...", flush=True)
    # the board first: an idle DAQ whose board still builds its event bank refuses the upload
    board = lambda: board_answers(session.bec_port, session.emulator, 0.2)  # noqa: E731
    session.wait(board, 240, "the emulator to answer")
    session.wait(lambda: rc.form.start_button.isEnabled() and w.model.status, 240, "the DAQ, idle")
    w.tick()
    w.view(AlarmsView).acknowledge(None)  # the shift starts: "no message from the DAQ" (start-up)

    rc.form.apply_preset("pedestal")
    rc.form.events_limit.setValue(PEDESTAL_EVENTS)
    rc.form.start_button.click()
    print(f"screenshots: pedestal run of {PEDESTAL_EVENTS} events ...", flush=True)
    session.wait(lambda: upload_failed(w) or (w.model.runs.ended_count >= 1
                                              and rc.form.start_button.isEnabled()),
                 180, "the pedestal run to end")  # fmt: skip
    if upload_failed(w):
        raise Failed(f"the pedestal upload failed: {upload_failed(w)}")
    session.wait(lambda: w.model.status.get("pedestal_table"), 30, "the pedestal table")

    rc.form.apply_preset("calibration")
    rc.form.script.setCurrentText("run")
    rc.form.comment.setText("make screenshots")
    rc.form.start_button.click()
    session.wait(lambda: w.model.state() == "running", 60, "the calibration run")
    print(f"screenshots: calibration run for {seconds:.0f} s ...", flush=True)
    end = time.monotonic() + seconds
    session.wait(lambda: time.monotonic() >= end, seconds + 5, "the calibration data")

    out.mkdir(parents=True, exist_ok=True)
    w.tick()
    shots = [shoot(w, i, out / tab_file(w.tabs.tabText(i))) for i in range(w.tabs.count())]
    w.tabs.setCurrentWidget(rc.widget)
    rc.form.stop_button.click()
    session.wait(lambda: w.model.runs.ended_count >= 2, 90, "the end of the calibration run")
    session.wait(lambda: rc.form.start_button.isEnabled(), 30, "run control after the run")
    end = time.monotonic() + 2.0  # the run list follows the DAQ's next run message
    session.wait(lambda: time.monotonic() >= end, 5, "the run list")
    shots.append(shoot(w, w.tabs.indexOf(rc.widget), out / "run-control-end-of-run.png"))
    return shots


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/screenshots", help="folder of the pictures")
    p.add_argument("--seconds", type=float, default=120.0, help="calibration data before")
    args = p.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841
    with tempfile.TemporaryDirectory(prefix="agetdaq-shots-") as tmp:
        session = Session(Path(tmp))
        try:
            shots = take(session, Path(args.out), args.seconds)
        except (Failed, OSError) as exc:
            log = (Path(tmp) / "children.log").read_text(errors="replace")[-3000:]
            print(f"screenshots: {exc}\n{log}", file=sys.stderr)
            return 1
        finally:
            session.close()
    for path in shots:
        print(f"screenshots: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
