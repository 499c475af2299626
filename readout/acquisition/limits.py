"""A run's identity and limits, and the conditions that end a running run by themselves."""

from __future__ import annotations

import math
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
    board_lost: bool = False  # the run ended because the board fell silent
    extra: dict = field(default_factory=dict)


MAX_RUN_EVENTS = 2**53  # events of one run (exact in a float, far beyond any real run)
MAX_RUN_SECONDS = 10 * 365 * 86400.0


def run_limits_error(events: object, seconds: object) -> str | None:
    """Why a run's event or time limit cannot be used (None: both fine; None = no limit)."""
    if events is not None and (
        isinstance(events, bool) or not isinstance(events, int) or not 0 < events <= MAX_RUN_EVENTS
    ):
        return f"events must be a whole number 1..{MAX_RUN_EVENTS}, not {events!r}"
    if seconds is not None:
        try:
            t = float(seconds)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            t = math.nan
        if isinstance(seconds, bool) or not (math.isfinite(t) and 0 < t <= MAX_RUN_SECONDS):
            return (
                f"seconds must be finite, above 0 and at most {MAX_RUN_SECONDS:g}, not {seconds!r}"
            )
    return None


class StopConditions:
    """Why a running run must stop now, if it must: its writer failed, it reached its events
    or its time, or the disk the run file is on is almost full (below ``disk_stop_gb``).

    The disk guard measures the filesystem of the run file (:meth:`watch`: ``-o`` may point
    anywhere), the data directory's until a run names its file."""

    def __init__(self, data_dir: Path, disk_stop_gb: float) -> None:
        self.data_dir = data_dir
        self.disk_stop_gb = disk_stop_gb
        self.watched = Path(data_dir)

    def watch(self, run_file: str | Path) -> None:
        """Guard the filesystem that holds ``run_file`` (call when a run's file is named)."""
        self.watched = Path(run_file).parent

    def free_disk_gb(self) -> float:
        try:
            return shutil.disk_usage(self.watched).free / 1e9
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
            where = f"{free:.2f} GB free on {self.watched}, limit {self.disk_stop_gb:g} GB"
            return f"disk almost full ({where})"
        return None
