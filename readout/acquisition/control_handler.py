"""Maps validated run-control requests (transport/control.py) onto the acquisition engine."""

from __future__ import annotations

import logging

from agetdaq.readout.acquisition.engine import Acquisition, EngineError
from agetdaq.readout.acquisition.scripts import confined_script
from agetdaq.readout.link.board_link import BoardError

log = logging.getLogger(__name__)


def handle(acq: Acquisition, request: dict) -> dict:
    """Carry out one request; never raises for an expected refusal."""
    cmd = request["cmd"]
    try:
        if cmd in ("status", "ping"):
            pass
        elif cmd == "configure":
            script, root = confined_script(acq.data_dir, request.get("script", "run"))
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
