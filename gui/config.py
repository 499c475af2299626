"""Settings of the monitor (defaults here; a TOML ``[monitor]`` table may override them).

Loaded by the one settings loader (:mod:`agetdaq.readout.config`): unknown keys, wrong kinds,
non-finite numbers and values out of range are refused as ``file: monitor.key: reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agetdaq.readout.config import ConfigError, build, load, setting

MAX_HISTORY_ROWS = 5_000_000  # rate and trend histories stay below ~100 MB


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor accumulates and how often it fits; all bounded."""

    redraw_hz: float = setting(10.0, "cap of the redraw rate", gt=0.0, hi=1000.0, unit="Hz")
    stale_after_s: float = setting(
        3.0, "no message for this long: the stream is 'stale'", gt=0.0, hi=3600.0, unit="s"
    )
    history_hours: float = setting(
        24.0, "length of the rate and trend histories", gt=0.0, hi=24.0 * 31, unit="h"
    )
    status_period_s: float = setting(
        1.0, "expected status interval (sizes the ring buffers)", lo=0.05, hi=3600.0, unit="s"
    )
    spectrum_bins: int = setting(1024, lo=16, hi=1 << 16)
    spectrum_adc_max: float = setting(
        8192.0, "X-ray-like energy (X + Y sum) range", gt=0.0, hi=1e6, unit="ADC"
    )
    recent_events: int = setting(32, "sampled events kept for the event display", lo=1, hi=10_000)
    slice_xrays: int = setting(
        2000, "a gain trend point every N X-ray-like events ...", lo=1, hi=10_000_000
    )
    slice_minutes: float = setting(
        10.0, "... or every T minutes of data, whichever comes first", gt=0.0, unit="min"
    )
    live_fit_s: float = setting(
        5.0, "refit the cumulative spectrum at most this often", lo=0.0, hi=3600.0, unit="s"
    )
    gainmap_n: int = setting(6, "gain map of n x n regions", lo=1, hi=120)
    gas: str = setting("Ar", choices=("Ar", "Xe"))
    alarm_history: int = setting(1000, lo=1, hi=1_000_000)
    logbook_dir: str = setting(
        "snapshots", "where 'Snapshot for the logbook' saves every tab (--snapshot-dir wins)",
        nonempty=True,
    )  # fmt: skip
    calib_points: int = setting(
        5000, "trend points kept (GUI fits and DAQ calib messages each)", lo=1, hi=1_000_000
    )

    def __post_init__(self) -> None:
        if self.history_rows > MAX_HISTORY_ROWS:
            raise ConfigError(
                f"{self.history_hours} h of {self.status_period_s} s status periods needs "
                f"{self.history_rows} history rows, more than {MAX_HISTORY_ROWS}",
                "history_hours",
            )

    @property
    def history_rows(self) -> int:
        return max(10, int(self.history_hours * 3600.0 / self.status_period_s * 1.1))

    @classmethod
    def from_dict(cls, values: dict, where: str = "monitor") -> MonitorConfig:
        """From a parsed ``[monitor]`` table; ConfigError naming the key."""
        return build(cls, values, where)

    @classmethod
    def load(cls, path: str | Path | None) -> MonitorConfig:
        """Defaults, overridden by the ``[monitor]`` table of ``path`` when given."""
        return cls() if path is None else load(cls, Path(path), "monitor")
