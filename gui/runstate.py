"""The DAQ's run states (docs/STREAM.md) and what an operator may ask for in each."""

from __future__ import annotations

STATES = ("idle", "configuring", "configured", "running", "stopping", "error")
ACTIONS = ("configure", "start", "stop", "mask", "reference")

_ALLOWED: dict[str, frozenset[str]] = {
    "idle": frozenset({"configure", "start", "mask", "reference"}),
    "configuring": frozenset(),
    "configured": frozenset({"configure", "start", "mask", "reference"}),
    "running": frozenset({"stop", "reference"}),
    "stopping": frozenset(),
    "error": frozenset({"configure", "stop"}),
}

# colours of the state machine display (background)
STATE_COLOURS = {
    "idle": "#d0d0d0",
    "configuring": "#ffe08a",
    "configured": "#b8d8ff",
    "running": "#8fe08f",
    "stopping": "#ffe08a",
    "error": "#ff8080",
}


def allowed_actions(
    state: str | None, reachable: bool = True, busy: bool = False
) -> frozenset[str]:
    """Requests the control panel enables: none while unreachable or a request is in flight."""
    if not reachable or busy or state is None:
        return frozenset()
    return _ALLOWED.get(state, frozenset())
