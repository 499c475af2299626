"""Bounded numpy accumulators of the monitor: hitmap, strip occupancy, rates, pedestal table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from agetdaq.gui.history import TimeSeries
from agetdaq.protocol.mapping import StripMapping
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
)


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


class Hitmap:
    """2-D histogram of centroids over the strip area; ``counts[ix, iy]`` (float32)."""

    def __init__(self, x_edges: np.ndarray, y_edges: np.ndarray) -> None:
        self.x_edges = np.asarray(x_edges, np.float64)
        self.y_edges = np.asarray(y_edges, np.float64)
        self.counts = np.zeros((len(x_edges) - 1, len(y_edges) - 1), np.float32)
        self.outside = 0

    @classmethod
    def for_mapping(cls, mapping: StripMapping) -> Hitmap:
        return cls(strip_edges(mapping.x_positions_mm), strip_edges(mapping.y_positions_mm))

    @property
    def total(self) -> int:
        return int(self.counts.sum(dtype=np.float64))

    def fill(self, x_mm: np.ndarray, y_mm: np.ndarray) -> None:
        x = np.asarray(x_mm, np.float64)
        y = np.asarray(y_mm, np.float64)
        nx, ny = self.counts.shape
        ix = np.searchsorted(self.x_edges, x, side="right") - 1
        iy = np.searchsorted(self.y_edges, y, side="right") - 1
        ok = np.isfinite(x) & np.isfinite(y) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        self.outside += int(len(x) - np.count_nonzero(ok))
        flat = np.bincount(ix[ok] * ny + iy[ok], minlength=nx * ny)
        self.counts += flat.reshape(nx, ny).astype(np.float32)

    def reset(self) -> None:
        self.counts[:] = 0
        self.outside = 0


def strip_edges(positions_mm: np.ndarray) -> np.ndarray:
    """Bin edges half-way between strip centres (and half a pitch beyond the ends)."""
    p = np.sort(np.asarray(positions_mm, np.float64))
    if len(p) < 2:
        return np.array([p[0] - 0.5, p[0] + 0.5]) if len(p) else np.array([0.0, 1.0])
    mid = 0.5 * (p[1:] + p[:-1])
    return np.concatenate(([p[0] - (mid[0] - p[0])], mid, [p[-1] + (p[-1] - mid[-1])]))


class StripOccupancy:
    """Hit counts per strip (global order); from sampled events or the DAQ's run histogram."""

    def __init__(self, n_strips: int) -> None:
        self.counts = np.zeros(n_strips, np.float32)
        self.events = 0
        self.source = "sampled events"

    def add_hits(self, hits: np.ndarray) -> None:
        h = np.asarray(hits, bool).reshape(-1, self.counts.size)
        self.counts += h.sum(axis=0, dtype=np.float32)
        self.events += h.shape[0]

    def set_from_daq(self, counts: np.ndarray) -> None:
        """The DAQ's own accumulated occupancy (every event) replaces the sampled one."""
        c = np.asarray(counts, np.float32).ravel()
        if c.size == self.counts.size:
            self.counts[:] = c
            self.source = "DAQ run histogram"

    def reset(self) -> None:
        self.counts[:] = 0
        self.events = 0


class RateTracker:
    """Rates vs time from ``status`` messages: DAQ rates, per-class rates, losses, dead time."""

    def __init__(self, capacity: int) -> None:
        self.series = TimeSeries(RATE_NAMES, capacity)
        self._prev_t: float | None = None
        self._prev_classes: dict[str, int] | None = None
        self._summary_classes = np.zeros(len(CLASS_KEYS), np.int64)
        self._loss_offset = 0  # cumulative losses of earlier DAQ restarts
        self._prev_losses = 0

    def count_summary(self, classes: np.ndarray) -> None:
        """Class codes of summary events (used when status has no ``class_counts``)."""
        c = np.clip(np.asarray(classes, np.int64), 0, len(CLASS_KEYS) - 1)
        self._summary_classes += np.bincount(c, minlength=len(CLASS_KEYS))

    def add_status(self, t: float, status: Mapping[str, object], gaps_total: int) -> None:
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
        dt = t - self._prev_t if self._prev_t is not None else None
        prev_total = self.series.last("losses_total")
        if dt and dt > 0 and prev_total is not None:
            values["loss_rate"] = max(0.0, values["losses_total"] - prev_total) / dt
        counts = self._class_counts(status)
        if dt and dt > 0 and self._prev_classes is not None:
            for key in CLASS_KEYS:
                delta = counts.get(key, 0) - self._prev_classes.get(key, 0)
                values[f"rate_{key}"] = max(delta, 0) / dt
        self._prev_classes = counts
        self._prev_t = t
        self.series.append(t, values)

    def _class_counts(self, status: Mapping[str, object]) -> dict[str, int]:
        raw = status.get("class_counts")
        if isinstance(raw, Mapping) and raw:
            out: dict[str, int] = {}
            for name, n in raw.items():
                key = class_key(str(name))
                if key and isinstance(n, (int, float)):
                    out[key] = out.get(key, 0) + int(n)
            return out
        return dict(zip(CLASS_KEYS, (int(n) for n in self._summary_classes)))

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
