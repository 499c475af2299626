"""Bounded accumulators of the monitor: rates from ``status`` messages, the pedestal table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from agetdaq.gui.history import TimeSeries
from agetdaq.readout.schema import CLASS_NAMES

CLASS_KEYS = CLASS_NAMES  # class codes 0..3 of the summary
RATE_NAMES = (
    "trigger_rate",
    "events_per_s",
    "mb_per_s",
    "dead_time_pct",
    "queue_fill",
    "rate_noise",
    "rate_xray",
    "rate_muon",
    "rate_other",
    "losses_total",
    "loss_rate",
    "disk_free_gb",
    "gaps_total",
    "malformed_total",
    "data_lost_total",
    "not_processed_total",
    "board_restarts_total",
    "data_lost_rate",
    "not_processed_rate",
)
# per-run (or per-DAQ-start) counters of the status kept as totals that never go back
RUN_COUNTERS = (("data_lost", "data_lost_total"), ("not_processed", "not_processed_total"),
                ("board_restarts", "board_restarts_total"))  # fmt: skip
GAP_PERIODS = 5.0  # status rows this many periods apart: an outage, the curves break there


def class_key(name: str) -> str | None:
    """Map a class name of ``status.class_counts`` ("xray", "X-ray-like", "muon"...) to a key."""
    n = "".join(c for c in name.lower() if c.isalnum())
    for key, prefix in (("xray", "x"), ("muon", "mu"), ("noise", "noi"), ("other", "oth")):
        if n.startswith(prefix):
            return key
    return None


def total_losses(losses: object) -> int:
    """Sum of every count in a ``{stage: {kind: count}}`` tree (non-numbers ignored)."""
    if isinstance(losses, Mapping):
        return sum(total_losses(v) for v in losses.values())
    if isinstance(losses, (int, float)) and not isinstance(losses, bool):
        return int(losses)
    return 0


class Running:
    """A counter that restarts (new run, DAQ restart) kept as a total that never goes back."""

    def __init__(self) -> None:
        self.offset = 0
        self.prev = 0

    def add(self, value: int) -> int:
        if value < self.prev:
            self.offset += self.prev
        self.prev = value
        return value + self.offset


class RateTracker:
    """Rates vs time from ``status`` messages: DAQ rates, per-class rates, losses, dead time.
    A status after an outage (more than GAP_PERIODS status periods) follows a row of NaN, so the
    curves show the gap instead of a straight ramp across it."""

    def __init__(self, capacity: int, period_s: float = 1.0) -> None:
        self.series = TimeSeries(RATE_NAMES, capacity)
        self.period_s = period_s
        self._prev_t: float | None = None
        self._prev_classes: dict[str, int] | None = None
        self._loss_offset = 0  # cumulative losses of earlier DAQ restarts
        self._prev_losses = 0
        self._totals = {name: Running() for _, name in RUN_COUNTERS}

    def add_status(
        self, t: float, status: Mapping[str, object], gaps_total: int, malformed_total: int = 0
    ) -> None:
        if self._prev_t is not None and t - self._prev_t > GAP_PERIODS * self.period_s:
            self.series.append(self._prev_t + self.period_s, {})  # the outage: a gap
        values: dict[str, float | None] = {}
        for key in ("trigger_rate", "events_per_s", "mb_per_s", "queue_fill", "disk_free_gb"):
            v = status.get(key)
            values[key] = float(v) if isinstance(v, (int, float)) else None
        dead = status.get("dead_time")
        values["dead_time_pct"] = 100.0 * dead if isinstance(dead, (int, float)) else None
        lost = total_losses(status.get("losses"))
        if lost < self._prev_losses:  # counters restarted with the DAQ
            self._loss_offset += self._prev_losses
        self._prev_losses = lost
        values["losses_total"] = float(lost + self._loss_offset)
        values["gaps_total"] = float(gaps_total)
        values["malformed_total"] = float(malformed_total)
        for key, name in RUN_COUNTERS:
            v = status.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                values[name] = float(self._totals[name].add(v))
        dt = t - self._prev_t if self._prev_t is not None else None
        prev_total = self.series.last("losses_total")
        if dt and dt > 0 and prev_total is not None:
            values["loss_rate"] = max(0.0, values["losses_total"] - prev_total) / dt
        for total, rate in (("data_lost_total", "data_lost_rate"),
                            ("not_processed_total", "not_processed_rate")):  # fmt: skip
            prev = self.series.last(total)
            if dt and dt > 0 and prev is not None and values.get(total) is not None:
                values[rate] = max(0.0, values[total] - prev) / dt
        counts = self._class_counts(status)
        if dt and dt > 0 and self._prev_classes is not None:
            for key in CLASS_KEYS:
                delta = counts.get(key, 0) - self._prev_classes.get(key, 0)
                values[f"rate_{key}"] = max(delta, 0) / dt
        self._prev_classes = counts
        self._prev_t = t
        self.series.append(t, values)

    def _class_counts(self, status: Mapping[str, object]) -> dict[str, int]:
        """The DAQ's class counts of the run (its RunHistograms), by key."""
        raw = status.get("class_counts")
        out: dict[str, int] = {}
        if isinstance(raw, Mapping):
            for name, n in raw.items():
                key = class_key(str(name))
                if key and isinstance(n, (int, float)):
                    out[key] = out.get(key, 0) + int(n)
        return out

    def increase_since(self, name: str, seconds: float) -> float | None:
        """Growth of a cumulative series over the last ``seconds`` of its own time axis."""
        end = self.series.last_time()
        last = self.series.last(name)
        if end is None or last is None:
            return None
        _, cols = self.series.window(end - seconds, [name])
        col = cols[name][np.isfinite(cols[name])]
        before = self.series.value_at(name, end - seconds)
        base = before if before is not None else (float(col[0]) if len(col) else last)
        return max(0.0, last - base)


class PedestalInfo:
    """The last ``pedestal`` table, in strip order plus the FPN/unmapped channels after it."""

    DEAD, NOISY, MASKED = 1, 2, 4

    def __init__(self, n_strips: int) -> None:
        self.n_strips = n_strips
        self.table: dict[str, np.ndarray] = {}
        self.run_number: int | None = None
        self.k_sigma: float | None = None

    @property
    def present(self) -> bool:
        return "mean" in self.table

    def set(self, header: Mapping[str, object], arrays: Mapping[str, np.ndarray]) -> None:
        need = ("strip", "mean", "sigma", "threshold", "flags")
        if not all(k in arrays for k in need):
            return
        n = len(arrays["strip"])
        if any(len(arrays[k]) != n for k in need):
            return
        self.table = {k: np.asarray(v) for k, v in arrays.items() if len(v) == n}
        rn = header.get("run_number")
        self.run_number = int(rn) if isinstance(rn, (int, float)) else None
        ks = header.get("k_sigma")
        self.k_sigma = float(ks) if isinstance(ks, (int, float)) else None

    def x_index(self) -> np.ndarray:
        """Plot position of every entry: the strip, or n_strips + k for the k-th other channel."""
        strip = self.table["strip"].astype(np.int64)
        other = strip < 0
        x = strip.copy()
        x[other] = self.n_strips + np.arange(int(other.sum()))
        return x

    def strips_with(self, flag: int) -> np.ndarray:
        """Global strip indices whose flags contain ``flag``."""
        if not self.present:
            return np.zeros(0, np.int64)
        s = self.table["strip"].astype(np.int64)
        sel = ((self.table["flags"].astype(np.int64) & flag) != 0) & (s >= 0) & (s < self.n_strips)
        return s[sel]

    def count(self, flag: int) -> int | None:
        if not self.present:
            return None
        return int(np.count_nonzero(self.table["flags"].astype(np.int64) & flag))
