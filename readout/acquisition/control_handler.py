"""Maps validated run-control requests (transport/control.py) onto the acquisition engine."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from agetdaq.readout.acquisition.engine import SCRIPTS_DIR, Acquisition, EngineError
from agetdaq.readout.acquisition.runlog import confine
from agetdaq.readout.link.board_link import BoardError

log = logging.getLogger(__name__)


def handle(acq: Acquisition, request: dict) -> dict:
    """Carry out one request; never raises for an expected refusal."""
    cmd = request["cmd"]
    try:
        if cmd in ("status", "ping"):
            pass
        elif cmd == "configure":
            script, root = confined_script(acq, request.get("script", "run"))
            acq.configure(script, root=root)
        elif cmd == "start":
            acq.start_run(
                request["run_type"],
                request.get("comment", ""),
                events=request.get("events"),
                seconds=request.get("seconds"),
            )
        elif cmd == "stop":
            acq.stop_run("stop requested by run control")
        elif cmd == "mask":
            acq.set_masked(request["strips"], request.get("masked", True))
        elif cmd == "reference":
            acq.gain_reference = float(request["gain_adc"])
            acq.calib.set_reference(acq.gain_reference)
    except (EngineError, BoardError, ValueError) as exc:
        log.warning("control %s refused: %s", cmd, exc)
        return {"ok": False, "error": str(exc), "state": acq.state}
    return {"ok": True, **acq.status()}


def confined_script(acq: Acquisition, name: str) -> tuple[str, Path]:
    """A script named in a control message and the directory it and every file it execs must
    stay in: a shipped one by plain name, else a file inside the data directory (ValueError
    otherwise: a remote client must not make the DAQ read any file, nor echo one)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name) and (SCRIPTS_DIR / f"{name}.txt").exists():
        return name, SCRIPTS_DIR
    return str(confine(acq.data_dir, name)), acq.data_dir
