"""Synthetic stream messages per docs/STREAM.md, for the GUI's tests, benchmark and demos.

``FakeDaq`` publishes on a real ``agetdaq.readout.transport.stream.Publisher``: status, summaries of
55Fe-like X-ray events (5.9 keV peak + Ar escape + background), sampled events with waveforms, a
pedestal table and calib trend points. Energies are in ADC (X + Y sum).
"""

from __future__ import annotations

import time

import numpy as np

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.schema import CLASS_NAMES
from agetdaq.readout.transport.stream import Publisher

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


def summary_arrays(
    rng: np.random.Generator,
    n: int,
    t0: float,
    first_id: int = 0,
    peak_adc: float = 3000.0,
    xray_fraction: float = 0.8,
) -> dict[str, np.ndarray]:
    """One ``summary`` batch: ``n`` events with features named as in docs/STREAM.md."""
    cls = np.where(rng.random(n) < xray_fraction, 1, rng.choice([0, 2, 3], size=n)).astype(np.int8)
    energy = fe55_energies(rng, n, peak_adc).astype(np.float32)
    x = rng.normal(0.0, 8.0, n).clip(-29.9, 29.9).astype(np.float32)
    y = rng.normal(0.0, 8.0, n).clip(-29.9, 29.9).astype(np.float32)
    ex = (energy * rng.uniform(0.45, 0.55, n)).astype(np.float32)
    return {
        "event_id": np.arange(first_id, first_id + n, dtype=np.uint64),
        "time_s": t0 + np.sort(rng.random(n)) * 0.1,
        "timestamp": np.arange(first_id, first_id + n, dtype=np.uint64) * 1000,
        "class": cls,
        "energy_adc": energy,
        "energy_x": ex,
        "energy_y": (energy - ex).astype(np.float32),
        "x_mm": x,
        "y_mm": y,
        "n_clusters_x": np.ones(n, np.int16),
        "n_clusters_y": np.ones(n, np.int16),
        "size_x": np.full(n, 4, np.int16),
        "size_y": np.full(n, 4, np.int16),
        "balance": np.abs(2 * ex - energy) / energy,
        "n_hits": np.full(n, 8, np.int16),
    }


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
    """Publishes synthetic stream messages on a real Publisher (tests, benchmark, demo)."""

    def __init__(self, publisher: Publisher, mapping: StripMapping | None = None, seed: int = 1):
        self.pub = publisher
        self.mapping = mapping or StripMapping.default()
        self.rng = np.random.default_rng(seed)
        self.run_number = 1
        self.events = 0
        self.classes = dict.fromkeys(CLASS_NAMES, 0)
        self.t_start = time.time()

    def status(self, state: str = "running", **overrides: object) -> bool:
        payload = status_payload(
            state, self.run_number, events=self.events, class_counts=dict(self.classes),
            elapsed_s=time.time() - self.t_start,
        )  # fmt: skip
        payload.update(overrides)
        return self.pub.publish("status", payload)

    def summary(self, n: int = 100, peak_adc: float = 3000.0) -> dict[str, np.ndarray]:
        arrays = summary_arrays(self.rng, n, time.time(), self.events, peak_adc)
        self.events += n
        for code, name in enumerate(CLASS_NAMES):
            self.classes[name] += int(np.count_nonzero(arrays["class"] == code))
        self.pub.publish("summary", {"run_number": self.run_number, "n": n}, arrays)
        return arrays

    def event(self, x_mm: float = 1.0, y_mm: float = -2.0, event_id: int = 0) -> dict:
        arrays = event_arrays(self.mapping, x_mm, y_mm, seed=event_id)
        header = {
            "run_number": self.run_number, "event_id": event_id, "event_count": event_id,
            "timestamp": 1000 * event_id, "class": 1, "energy_adc": 3000.0, "energy_x": 1500.0,
            "energy_y": 1500.0, "x_mm": x_mm, "y_mm": y_mm, "n_hits": int(arrays["hits"].sum()),
        }  # fmt: skip
        self.pub.publish("event", header, arrays)
        return arrays

    def pedestal(self, dead: tuple[int, ...] = (), noisy: tuple[int, ...] = ()) -> None:
        arrays = pedestal_arrays(self.mapping, dead, noisy)
        self.pub.publish("pedestal", {"run_number": self.run_number, "k_sigma": 5.0}, arrays)

    def calib(self, slice_no: int, gain_rel: float, t: float | None = None) -> None:
        t = time.time() if t is None else t
        spectrum = np.zeros(64, np.float32)
        self.pub.publish(
            "calib",
            {"slice": slice_no, "t_start": t - 60, "t_end": t, "counts": 2000, "ok": True,
             "peak_adc": 3000 * gain_rel, "gain_rel": gain_rel, "fwhm_rel": 0.18,
             "threshold_kev": 1.2, "reason": ""},
            {"spectrum": spectrum, "edges": np.linspace(0, 8192, 65)},
        )  # fmt: skip
