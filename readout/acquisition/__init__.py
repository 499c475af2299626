"""The acquisition of one detector line: the run state machine and its collaborators.

Enters: run-control requests (``agetdaq run`` directly, ``agetdaq serve`` over the control
socket: transport/control.py -> control_handler.py) and the settings (settings.py, TOML). Leaves:
board commands, one run file per run (the data path records it), the run log (runlog.py), status
on the stream, Prometheus metrics (metrics.py).

:class:`~agetdaq.readout.acquisition.engine.Acquisition` (engine.py) wires the link, the data path
(its pipeline from ``[pipeline]``), the store and the transport, and runs the states idle ->
configuring -> configured -> running -> stopping (error on a failure; the next configure leaves
it). Its collaborators each keep their own state: StopConditions (limits.py: writer failure,
events, time, disk; the range of a run's limits), BoardWatch (supervision.py: heartbeat, silence,
a lost board, credit re-grants, reboots), StatusReporter (status.py: status, counters, losses,
rates), BoardSteps (board_steps.py: the card's known state before a configuration, configure,
stop and drain, restart the triggers) and PedestalUse (pedestal_use.py: the pedestal table and
strip masks in use); scripts.py says which command script a request means.

What a detector's life brings (docs/RELIABILITY.md): a card left running by a DAQ that died is
drained into nothing before a run; a board silent for ``board_timeout_s`` ends the run in error
(board lost); the owner's stop request (signals) cuts every wait before a run short and no run is
created; a writer failure ends the run in error and releases its file.
"""
