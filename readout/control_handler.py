"""Maps validated run-control requests (readout/control.py) onto the acquisition engine."""

from __future__ import annotations

import logging

from readout.board_link import BoardError
from readout.engine import Acquisition, EngineError

log = logging.getLogger(__name__)


def handle(acq: Acquisition, request: dict) -> dict:
    """Carry out one request; never raises for an expected refusal."""
    cmd = request["cmd"]
    try:
        if cmd in ("status", "ping"):
            pass
        elif cmd == "configure":
            acq.configure(request.get("script", "run"))
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
            strips = [s for s in request["strips"] if 0 <= s < acq.mapping.n_strips]
            if request.get("masked", True):
                acq.masked.update(strips)
            else:
                acq.masked.difference_update(strips)
            acq.apply_masks()
        elif cmd == "reference":
            acq.gain_reference = float(request["gain_adc"])
    except (EngineError, BoardError, ValueError) as exc:
        log.warning("control %s refused: %s", cmd, exc)
        return {"ok": False, "error": str(exc), "state": acq.state}
    return {"ok": True, **acq.status()}
