"""The acquisition of one detector line: the run state machine and its collaborators.

Enters: run-control requests (``agetdaq run`` directly, ``agetdaq serve`` over the control
socket: transport/control.py -> control_handler.py) and the settings (settings.py, TOML). Leaves:
board commands, one run file per run (the data path records it), the run log (runlog.py), status
on the stream, Prometheus metrics (metrics.py).

:class:`~agetdaq.readout.acquisition.engine.Acquisition` (engine.py) wires the link, the data path
(its pipeline from ``[pipeline]``), the store and the transport, and runs the states idle ->
configuring -> configured -> running -> stopping. Its collaborators each keep their own state:
StopConditions (limits.py: writer failure, events, time, disk), BoardWatch (supervision.py:
heartbeat, silence, credit re-grants, reboots), StatusReporter (status.py: status, counters,
losses, rates), BoardSteps (board_steps.py: configure, stop and drain, restart the triggers) and
PedestalUse (pedestal_use.py: the pedestal table and strip masks in use).
"""
