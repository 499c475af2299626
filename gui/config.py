"""Settings of the monitor (defaults here; a TOML ``[monitor]`` table may override them)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor accumulates and how often it fits; all bounded."""

    redraw_hz: float = 10.0  # cap of the redraw rate
    stale_after_s: float = 3.0  # no message for this long: the stream is "stale"
    history_hours: float = 24.0  # length of the rate and trend histories
    status_period_s: float = 1.0  # expected status interval (sizes the ring buffers)
    spectrum_bins: int = 1024
    spectrum_adc_max: float = 8192.0  # X-ray-like energy (X + Y sum) range, ADC
    recent_events: int = 32  # sampled events kept for the event display
    slice_xrays: int = 2000  # a gain trend point every N X-ray-like events ...
    slice_minutes: float = 10.0  # ... or every T minutes of data, whichever comes first
    live_fit_s: float = 5.0  # refit the cumulative spectrum at most this often
    gainmap_n: int = 6  # gain map of n x n regions
    gas: str = "Ar"
    alarm_history: int = 1000
    calib_points: int = 5000  # trend points kept (GUI fits and DAQ calib messages each)

    @property
    def history_rows(self) -> int:
        return max(10, int(self.history_hours * 3600.0 / self.status_period_s * 1.1))

    @classmethod
    def from_dict(cls, values: dict, where: str = "monitor") -> MonitorConfig:
        """Unknown keys and values of the wrong type raise ValueError naming the key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out = {}
        for key, value in values.items():
            if key not in fields:
                raise ValueError(f"[{where}] unknown key {key!r}; known: {sorted(fields)}")
            default = fields[key].default
            kind = float if isinstance(default, float) else type(default)
            ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
            if not ok or isinstance(value, bool) != isinstance(default, bool):
                raise ValueError(f"[{where}] {key} = {value!r}: expected a {kind.__name__}")
            out[key] = kind(value)
        return cls(**out)

    @classmethod
    def load(cls, path: str | Path | None) -> MonitorConfig:
        """Defaults, overridden by the ``[monitor]`` table of ``path`` when given."""
        if path is None:
            return cls()
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read monitor settings {path}: {exc}") from None
        table = data.get("monitor", {})
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [monitor] must be a table")
        return cls.from_dict(table, f"{path} [monitor]")
