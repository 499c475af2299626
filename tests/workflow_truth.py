"""A calibration run's events against the emulator's truth, as `agetdaq calibrate` sees them (test
helper of tests/test_calibration_workflow.py and tools/calibration_workflow.py).

The truth of an event is found by the card's event counter (restarted by every run: ``clr evcnt``).
Efficiency = K-alpha photons converting inside the fiducial square (EventFilter's edge margin)
that the DAQ processed and calibrate's event filter and X-ray selection keep; on a detector with
bad strips (the run's pedestal table), also over the photons converting farther than the trend's
margin from every bad strip: the X-rays calibrate uses (a cloud on a dead or noisy strip loses
charge there, is unbalanced and rejected, or left out next to it by design). A trend point's
truth = the emulator's energy scale at the mean true gain of the selected X-rays in its time range.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from emulated_fe55 import adc_per_kev

from agetdaq.readout.analysis.calibration import TrendConfig, select_xrays
from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.runs import EventFilter, calibration_events, clock_offset
from agetdaq.readout.schema import NOT_PROCESSED
from agetdaq.readout.simulation.emulator.scenario import Scenario


def run_truth(truth: list[dict], index: int) -> dict[int, dict]:
    """The truth lines of one run the card took (0 = the first, -1 = the last), by event
    counter."""
    starts = [0] + [
        k for k in range(1, len(truth)) if truth[k]["event_count"] <= truth[k - 1]["event_count"]
    ]
    runs = [truth[a:b] for a, b in zip(starts, [*starts[1:], len(truth)])]
    return {t["event_count"]: t for t in runs[index]}


@dataclass
class RunEvents:
    """A run's event rows with their truth and calibrate's selection."""

    rows: np.ndarray
    truth: list[dict | None]
    time_s: np.ndarray  # event time as `agetdaq calibrate` computes it (unix s)
    processed: np.ndarray
    selected: np.ndarray  # kept by calibrate's event filter and X-ray selection
    ka: np.ndarray  # truth: a K-alpha photon converting inside the fiducial square
    gain: np.ndarray  # truth: relative gain of each event (NaN without truth)
    clear: np.ndarray  # truth: converted farther than the trend's margin from every bad strip

    @classmethod
    def of(
        cls, rows: np.ndarray, truth: dict[int, dict], bad: BadStrips | None = None
    ) -> RunEvents:
        times = rows["timestamp"].astype(np.float64) * 20e-9 + clock_offset(rows)
        events = calibration_events(rows, times, EventFilter())
        selected = np.isfinite(events["energy_adc"]) & select_xrays(events)
        tr = [truth.get(int(c)) for c in rows["event_count"]]
        inner = EventFilter().half_size_mm - EventFilter().edge_margin_mm
        ka = np.array(
            [
                t is not None
                and t["kind"] == "xray"
                and t["line"] == "Ka"
                and max(abs(t["x_mm"]), abs(t["y_mm"])) <= inner
                for t in tr
            ],
            dtype=bool,
        )
        gain = np.array([t["gain"] if t is not None and t.get("gain") else np.nan for t in tr])
        processed = (rows["build_flags"] & NOT_PROCESSED) == 0
        xy = np.array([(t["x_mm"], t["y_mm"]) if t else (np.nan, np.nan) for t in tr])
        xy = xy.reshape(-1, 2)
        margin = TrendConfig().bad_strip_margin_mm
        clear = ~bad.near(xy[:, 0], xy[:, 1], margin) if bad else np.ones(len(rows), bool)
        return cls(rows, tr, times, processed, selected, ka, gain, clear)

    @property
    def matched(self) -> float:
        """Share of the rows with a truth line."""
        return float(np.mean([t is not None for t in self.truth])) if self.truth else 0.0

    def efficiency(self, clear: bool = False) -> tuple[float, int]:
        """Share of the processed K-alpha photons selected, and their number (``clear``: of
        those away from the bad strips only)."""
        use = self.ka & self.processed & (self.clear if clear else True)
        return float((use & self.selected).sum() / max(use.sum(), 1)), int(use.sum())

    def point_gains(self, point: dict) -> np.ndarray:
        """True gains of the selected X-rays of a trend point (a trend.csv row)."""
        t0, t1 = float(point["t_start_s"]), float(point["t_stop_s"])
        mine = self.selected & (self.time_s >= t0) & (self.time_s <= t1) & np.isfinite(self.gain)
        return self.gain[mine]

    def minority(self, point: dict, step: float = 0.05) -> float:
        """Share of a point's X-rays on the minority side of a step inside it: 0 when their
        true gain spans less than ``step``, else the smaller share above / below the middle."""
        g = self.point_gains(point)
        if g.size == 0 or np.ptp(g) <= step * np.min(g):
            return 0.0
        mid = 0.5 * (g.max() + g.min())
        return float(min(np.mean(g > mid), np.mean(g < mid)))

    def gain_error(self, point: dict, scenario: Scenario) -> float:
        """A point's fitted gain (ADC/keV) over the emulator's scale at the mean true gain of
        its own X-rays, minus 1."""
        return (
            float(point["gain"]) / adc_per_kev(scenario, float(np.mean(self.point_gains(point))))
            - 1
        )


def trend_rows(path: Path) -> list[dict]:
    """The rows of a calibrate output's trend.csv."""
    with Path(path).open() as f:
        return list(csv.DictReader(f))
