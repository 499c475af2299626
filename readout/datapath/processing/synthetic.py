"""Synthetic detector waveforms for tests and benchmarks (numpy only, no emulator).

Raw ADC = pedestal[s] + noise[s] * N(0, 1) + common mode[chip, t] + pulses. The common mode of a
chip is shared by its FPN channels. Pulses are semi-Gaussian (CR-RC^4) with peak time
``peak_bins``; an X-ray is a Gaussian charge cloud at one drift time, a muon a straight track
through the 3 cm drift (cos^2 zenith angle) whose charge arrives along the drift time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from agetdaq.readout.datapath.processing.waveforms import N_CHIPS, N_FPN, N_SAMPLES, StripLayout

PITCH_MM = 0.5
DRIFT_MM = 30.0


def semi_gaussian(n_bins: int, peak_bins: float, order: int = 4) -> np.ndarray:
    """CR-RC^order pulse with unit maximum at ``peak_bins``, sampled at bins 0..n_bins-1."""
    tau = peak_bins / order
    t = np.arange(n_bins, dtype=np.float64) / tau
    return (t / order) ** order * np.exp(order - t)


@dataclass
class SyntheticDetector:
    """Pedestals, noise and common mode of a toy detector with the given layout."""

    layout: StripLayout
    seed: int = 0
    noise_range: tuple[float, float] = (2.0, 5.0)  # per-strip sigma, ADC
    pedestal_range: tuple[float, float] = (235.0, 265.0)
    cm_sigma: float = 4.0  # per chip, per time bin (white), ADC
    cm_offset_sigma: float = 3.0  # per chip, per event
    fpn_noise: float = 1.0
    peak_bins: float = 12.0  # 480 ns at 40 ns per bin
    adc_per_kev: float = 80.0  # per axis: a 5.9 keV X-ray gives ~470 ADC on X and on Y
    cloud_sigma_mm: float = 0.5
    drift_velocity_mm_per_bin: float = 1.0  # 25 mm/us at 40 ns per bin
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        n_s = self.layout.n_strips
        self.pedestal = self.rng.uniform(*self.pedestal_range, n_s).astype(np.float32)
        self.noise = self.rng.uniform(*self.noise_range, n_s).astype(np.float32)
        self.fpn_pedestal = self.rng.uniform(*self.pedestal_range, (N_CHIPS, N_FPN))
        self.pulse = semi_gaussian(N_SAMPLES, self.peak_bins)

    def baseline(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Signal-free events: strips (n, S, T), FPN (n, 4, 4, T) float32, and the common mode
        (n, 4, T) that was injected.
        """
        rng = self.rng
        n_s = self.layout.n_strips
        cm = rng.standard_normal((n, N_CHIPS, N_SAMPLES), dtype=np.float32) * self.cm_sigma
        cm += rng.standard_normal((n, N_CHIPS, 1), dtype=np.float32) * self.cm_offset_sigma
        strips = rng.standard_normal((n, n_s, N_SAMPLES), dtype=np.float32)
        strips *= self.noise[None, :, None]
        strips += self.pedestal[None, :, None]
        strips += cm[:, self.layout.chip, :]
        fpn = rng.standard_normal((n, N_CHIPS, N_FPN, N_SAMPLES), dtype=np.float32)
        fpn *= self.fpn_noise
        fpn += self.fpn_pedestal[None, :, :, None].astype(np.float32)
        fpn += cm[:, :, None, :]
        return strips, fpn, cm

    def _deposit(self, strips: np.ndarray, charge: np.ndarray) -> None:
        """Add pulses: charge (S, T) = charge arriving on each strip at each bin (ADC of peak)."""
        rows = np.flatnonzero(charge.max(axis=1) > 0)
        if rows.size:
            conv = np.fft.irfft(
                np.fft.rfft(charge[rows], 2 * N_SAMPLES) * np.fft.rfft(self.pulse, 2 * N_SAMPLES),
                2 * N_SAMPLES,
            )[:, :N_SAMPLES]
            strips[rows] += conv.astype(np.float32)

    def _cloud(self, charge: np.ndarray, x: float, y: float, t: float, q: float) -> None:
        """Add a Gaussian cloud of q ADC per axis centred at (x, y) mm arriving at bin t."""
        lay = self.layout
        half = PITCH_MM / 2
        coord = np.where(lay.axis == 0, x, y)
        frac = ndtr((lay.position_mm + half - coord) / self.cloud_sigma_mm) - ndtr(
            (lay.position_mm - half - coord) / self.cloud_sigma_mm
        )
        tb = round(t)
        if 0 <= tb < N_SAMPLES:
            charge[:, tb] += q * frac

    def xrays(self, n: int, energy_kev: float = 5.9, resolution_fwhm: float = 0.15):
        """X-ray events; returns strips, fpn and a truth dict (x_mm, y_mm, t0)."""
        strips, fpn, _ = self.baseline(n)
        rng = self.rng
        truth = {k: np.empty(n) for k in ("x_mm", "y_mm", "t0")}
        for e in range(n):
            x, y = rng.uniform(-25.0, 25.0, 2)
            t0 = rng.uniform(100.0, 100.0 + DRIFT_MM / self.drift_velocity_mm_per_bin)
            q = energy_kev * self.adc_per_kev * (1 + rng.normal(0, resolution_fwhm / 2.355))
            charge = np.zeros(strips.shape[1:], np.float64)
            self._cloud(charge, x, y, t0, q)
            self._deposit(strips[e], charge)
            truth["x_mm"][e], truth["y_mm"][e], truth["t0"][e] = x, y, t0
        return strips, fpn, truth

    def muons(self, n: int, kev_per_mm: float = 0.35, step_mm: float = 0.1):
        """Cosmic-muon tracks crossing the drift (cos^2 zenith); returns strips, fpn, truth."""
        strips, fpn, _ = self.baseline(n)
        rng = self.rng
        truth = {k: np.empty(n) for k in ("theta", "length_mm")}
        for e in range(n):
            cos_t = rng.uniform(0, 1) ** (1 / 3)  # p(cos) ~ cos^2
            theta = np.arccos(cos_t)
            phi = rng.uniform(0, 2 * np.pi)
            x0, y0 = rng.uniform(-20.0, 20.0, 2)
            length = DRIFT_MM / cos_t
            steps = min(400, max(2, int(length / step_mm)))
            s = (np.arange(steps) + 0.5) / steps
            z = DRIFT_MM * s
            r = length * s * np.sin(theta)
            xs, ys = x0 + r * np.cos(phi), y0 + r * np.sin(phi)
            inside = (np.abs(xs) < 30) & (np.abs(ys) < 30)
            q = kev_per_mm * length / steps * self.adc_per_kev
            t_start = rng.uniform(60.0, 120.0)
            charge = np.zeros(strips.shape[1:], np.float64)
            for xi, yi, zi in zip(xs[inside], ys[inside], z[inside]):
                self._cloud(charge, xi, yi, t_start + zi / self.drift_velocity_mm_per_bin, q)
            self._deposit(strips[e], charge)
            truth["theta"][e], truth["length_mm"][e] = theta, length
        return strips, fpn, truth
