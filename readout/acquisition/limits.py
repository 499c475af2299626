"""A run's identity and limits, and the conditions that end a running run by themselves."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunInfo:
    number: int = 0
    run_type: str = ""
    comment: str = ""
    path: str = ""
    start_unix: float = 0.0
    start_mono: float = 0.0
    max_events: int | None = None
    max_seconds: float | None = None
    stop_reason: str = ""
    extra: dict = field(default_factory=dict)


class StopConditions:
    """Why a running run must stop now, if it must: its writer failed, it reached its events
    or its time, or the data disk is almost full (below ``disk_stop_gb``)."""

    def __init__(self, data_dir: Path, disk_stop_gb: float) -> None:
        self.data_dir = data_dir
        self.disk_stop_gb = disk_stop_gb

    def free_disk_gb(self) -> float:
        try:
            return shutil.disk_usage(self.data_dir).free / 1e9
        except OSError:
            return 0.0

    def reason(self, run: RunInfo, datapath: Any) -> str | None:
        """The stop reason, or None while the run may go on (``datapath``: its DataPath)."""
        if datapath.failure:
            return f"writer failed: {datapath.failure}"
        if run.max_events is not None and datapath.counters.events >= run.max_events:
            return f"{run.max_events} events reached"
        if run.max_seconds is not None and time.monotonic() - run.start_mono >= run.max_seconds:
            return f"{run.max_seconds:g} s elapsed"
        free = self.free_disk_gb()
        if free < self.disk_stop_gb:
            return f"disk almost full ({free:.1f} GB free)"
        return None
