"""Synthetic stream messages per docs/STREAM.md, for the GUI's tests, benchmark and demos.

``FakeDaq`` runs the DAQ's own monitor feed over synthetic event rows of 55Fe-like X-ray events
(5.9 keV peak + Ar escape + background) and publishes what it makes, on a real
``agetdaq.readout.transport.stream.Publisher`` or an in-process sink: summaries and run
histograms, sampled events with waveforms, a pedestal table and calib trend points; status
messages carry the feed's class counts. Energies are in ADC (X + Y sum).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.calibration import TrendPoint
from agetdaq.readout.analysis.monitor import MonitorFeed
from agetdaq.readout.analysis.monitor import summary_arrays as feed_summary
from agetdaq.readout.analysis.sink import MessageSink
from agetdaq.readout.schema import CLASS_NAMES, EVENT_DTYPE, PEDESTAL_DTYPE

N_SAMPLES = 512


def status_payload(
    state: str = "running",
    run_number: int = 1,
    run_type: str = "calibration",
    events: int = 0,
    rate: float = 50.0,
    losses: dict | None = None,
    disk_free_gb: float = 500.0,
    class_counts: dict | None = None,
    elapsed_s: float = 0.0,
) -> dict:
    return {
        "state": state,
        "run_number": run_number,
        "run_type": run_type,
        "comment": "synthetic",
        "start_time": time.time() - elapsed_s,
        "elapsed_s": elapsed_s,
        "events": events,
        "events_per_s": rate,
        "trigger_rate": rate,
        "mb_per_s": 0.5,
        "bytes": 1000 * events,
        "queue_fill": 0.01,
        "losses": losses if losses is not None else {"socket": {"dropped": 0}},
        "disk_free_gb": disk_free_gb,
        "file": f"run{run_number:06d}.h5",
        "file_mb": 1.0,
        "board": "127.0.0.1:1122",
        "board_alive": True,
        "data_age_s": 0.1,
        "class_counts": class_counts or dict.fromkeys(CLASS_NAMES, 0),
        "dead_time": 0.01,
        "message": "",
    }


def fe55_energies(
    rng: np.random.Generator, n: int, peak_adc: float = 3000.0, resolution: float = 0.18
) -> np.ndarray:
    """ADC energies: 80 % K-alpha/K-beta, 10 % Ar escape, 10 % exponential background."""
    sigma = resolution / 2.3548 * peak_adc
    kind = rng.choice(3, size=n, p=(0.8, 0.1, 0.1))
    e = rng.normal(peak_adc, sigma, n)
    esc = kind == 1
    e[esc] = rng.normal(peak_adc * 2.94 / 5.9, sigma * np.sqrt(2.94 / 5.9), int(esc.sum()))
    bkg = kind == 2
    e[bkg] = rng.exponential(0.6 * peak_adc, int(bkg.sum())) + 0.15 * peak_adc
    return e


def synthetic_rows(
    rng: np.random.Generator,
    n: int,
    t0: float,
    first_id: int = 0,
    peak_adc: float = 3000.0,
    xray_fraction: float = 0.8,
) -> np.ndarray:
    """``n`` event-table rows (the DAQ's dtype) of 55Fe-like events, features filled, every
    event processed and kept by the software trigger; host times over 0.1 s from ``t0``."""
    rows = np.zeros(n, EVENT_DTYPE)
    ids = np.arange(first_id, first_id + n, dtype=np.uint64)
    cls = np.where(rng.random(n) < xray_fraction, 1, rng.choice([0, 2, 3], size=n))
    energy = fe55_energies(rng, n, peak_adc).astype(np.float32)
    ex = (energy * rng.uniform(0.45, 0.55, n)).astype(np.float32)
    rows["event_id"], rows["event_count"], rows["timestamp"] = ids, ids, ids * 1000
    rows["time_ns"] = ((t0 + np.sort(rng.random(n)) * 0.1) * 1e9).astype(np.uint64)
    rows["cls"], rows["trig"] = cls, True
    rows["energy"], rows["ex"], rows["ey"] = energy, ex, energy - ex
    rows["x_mm"] = rng.normal(0.0, 8.0, n).clip(-29.9, 29.9)
    rows["y_mm"] = rng.normal(0.0, 8.0, n).clip(-29.9, 29.9)
    rows["ncl_x"] = rows["ncl_y"] = 1
    rows["size_x"] = rows["size_y"] = rows["nx"] = rows["ny"] = 4
    rows["sigma_x"] = rows["sigma_y"] = 0.5
    rows["balance"] = np.abs(2 * ex - energy) / energy
    rows["n_hits"] = 8
    return rows


def synthetic_hits(mapping: StripMapping, rows: np.ndarray) -> np.ndarray:
    """(n, n_strips) bool: the strips within 1 mm of each event's centroid, on both axes."""
    hits = np.zeros((len(rows), mapping.n_strips), bool)
    for axis, centre in ((0, rows["x_mm"]), (1, rows["y_mm"])):
        idx = np.flatnonzero(mapping.axis == axis)
        near = np.abs(mapping.position_mm[idx][None, :] - centre[:, None]) < 1.0
        hits[:, idx] = near
    return hits


def summary_arrays(
    rng: np.random.Generator,
    n: int,
    t0: float,
    first_id: int = 0,
    peak_adc: float = 3000.0,
    xray_fraction: float = 0.8,
) -> dict[str, np.ndarray]:
    """One ``summary`` batch as the DAQ's feed makes it from ``synthetic_rows``."""
    return feed_summary(synthetic_rows(rng, n, t0, first_id, peak_adc, xray_fraction))


def event_arrays(
    mapping: StripMapping, x_mm: float, y_mm: float, amplitude: float = 400.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """``waveforms`` (n_strips, 512) float32 with a pulse on ~4 strips per axis, and ``hits``."""
    rng = np.random.default_rng(seed)
    wf = rng.normal(0.0, 3.0, (mapping.n_strips, N_SAMPLES)).astype(np.float32)
    t = np.arange(N_SAMPLES, dtype=np.float32)
    shape = np.where(t > 200, ((t - 200) / 20.0) ** 4 * np.exp(-(t - 200) / 20.0 * 4 + 4), 0.0)
    shape = (shape / shape.max()).astype(np.float32)
    hits = np.zeros(mapping.n_strips, bool)
    for centre, axis in ((x_mm, 0), (y_mm, 1)):
        idx = np.flatnonzero(mapping.axis == axis)
        d = mapping.position_mm[idx] - centre
        near = idx[np.abs(d) < 1.0]
        for s in near:
            w = np.exp(-0.5 * ((mapping.position_mm[s] - centre) / 0.5) ** 2)
            wf[s] += amplitude * w * shape
            hits[s] = True
    return {"waveforms": wf, "hits": hits}


def pedestal_arrays(
    mapping: StripMapping, dead: tuple[int, ...] = (), noisy: tuple[int, ...] = ()
) -> dict[str, np.ndarray]:
    """A pedestal table: every strip plus 4 FPN channels per chip (strip -1)."""
    n = mapping.n_strips
    n_fpn = 16
    strip = np.concatenate((np.arange(n), np.full(n_fpn, -1))).astype(np.int16)
    chip = np.concatenate((mapping.chip, np.repeat(np.arange(4), 4))).astype(np.uint8)
    mean = np.full(n + n_fpn, 250.0, np.float32)
    sigma = np.full(n + n_fpn, 3.0, np.float32)
    flags = np.zeros(n + n_fpn, np.uint8)
    for s in dead:
        flags[s] |= 1
        sigma[s] = 0.2
    for s in noisy:
        flags[s] |= 2
        sigma[s] = 15.0
    return {
        "strip": strip,
        "card": np.zeros(n + n_fpn, np.uint8),
        "chip": chip,
        "channel": np.arange(n + n_fpn, dtype=np.uint8) % 79,
        "mean": mean,
        "sigma": sigma,
        "threshold": (5.0 * sigma).astype(np.float32),
        "flags": flags,
    }


class FakeDaq:
    """A DAQ made of the DAQ's own monitor feed (agetdaq.readout.analysis.monitor.MonitorFeed)
    over synthetic event rows, publishing on a real Publisher or any message sink (tests,
    benchmark, demo). Every ``summary`` call publishes its summary and the run's ``hist``."""

    def __init__(
        self,
        publisher: MessageSink,
        mapping: StripMapping | None = None,
        seed: int = 1,
        run_type: str = "background",
        clock: Callable[[], float] = time.time,
        run_number: int = 1,
    ) -> None:
        self.pub = publisher
        self.clock = clock  # host time of the synthetic events
        self.mapping = mapping or StripMapping.default()
        self.rng = np.random.default_rng(seed)
        self.feed = MonitorFeed(publisher, mapping=self.mapping)
        self.run_number = run_number
        self.run_type = run_type  # "calibration": the feed's 55Fe analysis runs on the rows
        self.feed.begin_run(self.run_number, run_type)
        self.events = 0
        self.t_start = clock()

    def new_run(self, run_number: int, run_type: str | None = None) -> None:
        """End the run (its last summary and histograms) and start another."""
        self.feed.end_run()
        self.run_number = run_number
        self.run_type = self.run_type if run_type is None else run_type
        self.events = 0
        self.feed.begin_run(run_number, self.run_type)

    @property
    def classes(self) -> dict[str, int]:
        """The feed's class counts of the run (as the DAQ's status reports them)."""
        return dict(zip(CLASS_NAMES, self.feed.hist.class_counts.tolist()))

    def status(self, state: str = "running", **overrides: object) -> bool:
        payload = status_payload(
            state, self.run_number, self.run_type, events=self.events, class_counts=self.classes,
            elapsed_s=self.clock() - self.t_start,
        )  # fmt: skip
        payload.update(overrides)
        return self.pub.publish("status", payload)

    def summary(
        self, n: int = 100, peak_adc: float = 3000.0, xray_fraction: float = 0.8
    ) -> dict[str, np.ndarray]:
        """``n`` synthetic events through the feed; returns their summary arrays."""
        rows = synthetic_rows(self.rng, n, self.clock(), self.events, peak_adc, xray_fraction)
        self.events += n
        self.feed.on_batch(rows, synthetic_hits(self.mapping, rows), None)
        self.feed.flush()
        return feed_summary(rows)

    def event(self, x_mm: float = 1.0, y_mm: float = -2.0, event_id: int = 0) -> dict:
        arrays = event_arrays(self.mapping, x_mm, y_mm, seed=event_id)
        row = synthetic_rows(np.random.default_rng(event_id), 1, self.clock(), event_id)[0]
        row["cls"], row["x_mm"], row["y_mm"] = 1, x_mm, y_mm
        row["energy"], row["ex"], row["ey"] = 3000.0, 1500.0, 1500.0
        row["n_hits"] = int(arrays["hits"].sum())
        self.feed.publish_event(row, arrays["waveforms"], arrays["hits"])
        return arrays

    def pedestal(self, dead: tuple[int, ...] = (), noisy: tuple[int, ...] = ()) -> None:
        arrays = pedestal_arrays(self.mapping, dead, noisy)
        table = np.zeros(len(arrays["strip"]), PEDESTAL_DTYPE)
        for name in PEDESTAL_DTYPE.names:
            table[name] = arrays[name]
        self.feed.publish_pedestals(self.run_number, table, 5.0)

    def calib(self, slice_no: int, gain_rel: float, t: float | None = None) -> None:
        """A trend point of the feed's 55Fe analysis with the given relative gain."""
        t = self.clock() if t is None else t
        peak = 3000.0 * gain_rel
        point = TrendPoint(
            index=slice_no, t_start_s=t - 60, t_stop_s=t, n_events=2000, n_xrays=2000, ok=True,
            reason="", peak_adc=peak, peak_adc_err=2.0, gain=peak / 5.9, gain_err=0.3,
            gain_rel=gain_rel, gain_rel_err=0.001, resolution=0.18, resolution_err=0.005,
            threshold_kev_adc=1.2, threshold_kev_spectrum=float("nan"),
            threshold_kev_spectrum_err=float("nan"), chi2_ndf=1.0,
        )  # fmt: skip
        self.feed.calib.publish(point, fe55_energies(self.rng, 2000, peak))
