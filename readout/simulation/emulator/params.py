"""Physics parameters of the emulator: dataclasses whose defaults are the documented values.

Every field carries its documentation, unit and allowed range in ``metadata`` (``param`` is
:func:`agetdaq.readout.config.setting`); the one settings loader checks scenario TOML against them.
Values marked [U] in /work/shared/DETECTOR.md are unmeasured: they are defaults, not facts.
Coordinates: x, y in mm with (0, 0) at the centre of the 60 x 60 mm2 strip area; z = drift
distance in mm (0 at the mesh, ``drift_length_mm`` at the cathode window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from agetdaq.readout.config import setting as param  # a field with its doc, unit and limits

# AGET peaking time per 4-bit code, ns (PROTOCOL.md §6).
PEAKING_TIME_NS: tuple[float, ...] = (
    69.7, 117.3, 232.3, 279.7, 333.9, 382.7, 501.8, 541.3,
    568.2, 632.5, 720.9, 760.3, 830.7, 869.2, 976.5, 1014.0,
)  # fmt: skip
SCA_BASE_CLOCK_MHZ = 100.0  # SCA write clock = 100 MHz / wckdiv
N_SAMPLES = 512  # SCA cells
N_CHIPS = 4
N_CHANNELS = 68  # 0..63 = physical AGET channels 1..64, 64..67 = FPN 1..4
REF_ENERGY_KEV = 5.9  # energy at which resolutions are quoted
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class DetectorParams:
    """Gas, amplification, geometry and AGET front end ([detector])."""

    w_value_ev: float = param(
        26.0, "mean energy per electron-ion pair (Ar 26, Xe 22)", lo=1.0, unit="eV"
    )
    fano: float = param(0.2, "Fano factor of the primary ionisation (Ar ~0.2)", lo=0.0, hi=1.0)
    gain: float = param(3000.0, "nominal Micromegas gas gain [U]", lo=1.0)
    adc_per_fc: float = param(
        27.5,
        "peak ADC per fC arriving at once on one strip; 27.5 puts a 5.9 keV X-ray at gain 3000 at "
        "~1500 ADC summed over the strips of one axis (~110 fC split X/Y)",
        lo=0.0,
        unit="ADC/fC",
    )
    resolution_fwhm: float = param(
        0.18,
        "intrinsic FWHM/E at 5.9 keV of the X+Y charge sum at nominal gain [U]",
        lo=0.0,
        hi=2.0,
    )
    xy_share: float = param(0.5, "mean fraction of the charge read by the X layer", lo=0.0, hi=1.0)
    xy_share_sigma: float = param(
        0.02, "event-to-event sigma of the X fraction (Y gets the rest)", lo=0.0, hi=0.5
    )
    diffusion_sigma_mm: float = param(
        0.5,
        "transverse diffusion sigma after the full drift length, grows as sqrt(z) [U]",
        lo=0.0,
        unit="mm",
    )
    diffusion_floor_mm: float = param(
        0.15, "cloud sigma added in quadrature (amplification gap spread) [U]", lo=0.0, unit="mm"
    )
    drift_length_mm: float = param(30.0, "drift gap, cathode window to mesh", lo=1.0, unit="mm")
    drift_velocity_mm_per_us: float = param(
        30.0, "electron drift velocity (Ar + 2% isobutane, 1.4 bar) [U]", lo=0.1, unit="mm/us"
    )
    absorption_length_mm: float = param(
        16.0,
        "5.9 keV photon absorption length measured from the window (1.4 bar Ar); 0 = uniform depth",
        lo=0.0,
        unit="mm",
    )
    peaking_time_code: int = param(
        6, "AGET peaking time code 0..15 (6 = 501.8 ns) [U]", lo=0, hi=15
    )
    shaper_order: int = param(4, "n of the CR-RC^n semi-Gaussian pulse", lo=1, hi=8)
    wckdiv: int = param(4, "SCA write clock divider: bin = 10 ns x wckdiv", lo=1, hi=63)
    trigger_bin: int = param(
        200,
        "SCA bin where charge created at t = 0 would arrive with zero drift",
        lo=0,
        hi=N_SAMPLES - 1,
    )
    polarity: int = param(
        1,
        "1 = signals go up from the pedestal (default), 0 = they go down (needs a high pedestal)",
        choices=(0, 1),
    )
    active_size_mm: float = param(60.0, "side of the square strip area", lo=1.0, unit="mm")

    @property
    def peaking_time_ns(self) -> float:
        return PEAKING_TIME_NS[self.peaking_time_code]

    @property
    def bin_ns(self) -> float:
        return 1000.0 / SCA_BASE_CLOCK_MHZ * self.wckdiv

    def fluctuation_b(self, fwhm: float) -> float:
        """Relative variance per electron of the avalanche (b) giving ``fwhm`` at 5.9 keV.

        Charge variance / mean^2 = (F + b) / N with N = E / W primary electrons.
        """
        n_ref = REF_ENERGY_KEV * 1000.0 / self.w_value_ev
        return n_ref * (fwhm / FWHM_PER_SIGMA) ** 2 - self.fano


@dataclass(frozen=True)
class NoiseParams:
    """Pedestals and noise of the 4 x 68 channels ([noise])."""

    pedestal_mean: float = param(
        250.0, "mean raw pedestal before card equalisation", lo=0, hi=4095, unit="ADC"
    )
    pedestal_spread: float = param(
        30.0, "channel-to-channel sigma of the pedestal", lo=0.0, unit="ADC"
    )
    sigma_mean: float = param(3.5, "mean noise sigma of a channel [U: 2-6]", lo=0.0, unit="ADC")
    sigma_spread: float = param(
        0.7, "channel-to-channel sigma of the noise sigma", lo=0.0, unit="ADC"
    )
    sigma_min: float = param(1.0, "floor of a channel's noise sigma", lo=0.0, unit="ADC")
    common_mode_sigma: float = param(
        2.0, "per-chip common-mode sigma, shared by all 68 channels incl. FPN", lo=0.0, unit="ADC"
    )
    common_mode_corr_bins: int = param(
        8, "time correlation of the common mode (moving average length, 1 = white)", lo=1, hi=512
    )
    dead_strips: tuple[int, ...] = param(
        (), "global strip numbers (X 0..119, Y 120..239) that are dead"
    )
    dead_random: int = param(
        0, "extra dead strips chosen at random (from the model seed)", lo=0, hi=240
    )
    dead_sigma: float = param(0.5, "noise sigma of a dead channel", lo=0.0, unit="ADC")
    noisy_strips: tuple[int, ...] = param((), "global strip numbers that are noisy")
    noisy_random: int = param(0, "extra noisy strips chosen at random", lo=0, hi=240)
    noisy_factor: float = param(4.0, "noise multiplier of a noisy channel (3-5)", lo=1.0)
    time_multiplier: tuple[tuple[float, float], ...] = param(
        (), "[[t_s, factor], ...]: noise multiplier vs time, linear between points (empty = 1)"
    )
    noise_bank_samples: int = param(
        4_194_304,
        "size of the pre-generated unit-normal bank for the fast noise path; 0 = draw fresh noise",
        lo=0,
        hi=1 << 26,
    )

    def multiplier_at(self, t: float) -> float:
        """Noise multiplier at time t (s): linear between the time_multiplier points."""
        if not self.time_multiplier:
            return 1.0
        ts, ms = zip(*self.time_multiplier)
        return float(np.interp(t, ts, ms))


@dataclass(frozen=True)
class Fe55Params:
    """55Fe source ([source.fe55])."""

    rate_hz: float = param(
        20.0, "interaction rate in the gas (0 = source out)", lo=0.0, hi=1e6, unit="Hz"
    )
    area: str = param(
        "spot", "'spot' (disc) or 'full' (whole strip area)", choices=("spot", "full")
    )
    centre_mm: tuple[float, float] = param((0.0, 0.0), "spot centre [x, y]", unit="mm")
    radius_mm: float = param(5.0, "spot radius (uniform disc)", lo=0.0, unit="mm")
    ka_kev: float = param(5.90, "Mn K-alpha", lo=0.1, unit="keV")
    kb_kev: float = param(6.49, "Mn K-beta", lo=0.1, unit="keV")
    escape_kev: float = param(2.94, "Ar escape peak (K-alpha - Ar K)", lo=0.1, unit="keV")
    kb_to_ka: float = param(0.14, "K-beta / K-alpha intensity ratio", lo=0.0, hi=1.0)
    escape_fraction: float = param(
        0.10, "fraction of all events in the escape peak", lo=0.0, hi=1.0
    )

    def line_probabilities(self) -> tuple[float, float, float]:
        """(P(Ka), P(Kb), P(escape))."""
        rest = 1.0 - self.escape_fraction
        return (
            rest / (1.0 + self.kb_to_ka),
            rest * self.kb_to_ka / (1.0 + self.kb_to_ka),
            self.escape_fraction,
        )


@dataclass(frozen=True)
class MuonParams:
    """Cosmic muons ([source.muon])."""

    rate_hz: float = param(
        0.6, "rate of muons crossing the drift volume (~1 /cm2/min)", lo=0.0, hi=1e6, unit="Hz"
    )
    dedx_kev_per_cm: float = param(
        2.5, "most probable energy loss in 1.4 bar Ar (mean ~3.5)", lo=0.0, unit="keV/cm"
    )
    landau_width: float = param(
        0.25,
        "scale of the Moyal (Landau-like) fluctuation: FWHM ~0.9 x the most probable",
        lo=0.0,
        hi=2.0,
    )
    zenith_power: float = param(2.0, "intensity per solid angle ~ cos^n(zenith)", lo=0.0, hi=10.0)
    tilt_deg: float = param(
        0.0,
        "angle of the drift axis from vertical (90 = looking into a horizontal bore)",
        lo=0,
        hi=90,
        unit="deg",
    )
    step_mm: float = param(0.25, "ionisation step along the track", lo=0.01, hi=5.0, unit="mm")


@dataclass(frozen=True)
class GainRegion:
    """One cell of the gain map grid with its relative gain."""

    ix: int = param(0, "column, 0 = most negative x", lo=0)
    iy: int = param(0, "row, 0 = most negative y", lo=0)
    gain: float = param(1.0, "relative gain of the cell", lo=0.0)


@dataclass(frozen=True)
class GainMapParams:
    """Relative gain per region of an nx x ny grid over the strip area ([gain.map])."""

    nx: int = param(6, "grid columns", lo=1, hi=120)
    ny: int = param(6, "grid rows", lo=1, hi=120)
    regions: tuple[GainRegion, ...] = param((), "cells that differ from 1.0: [{ix, iy, gain}, ...]")

    @cached_property
    def grid(self) -> np.ndarray:
        """(ny, nx) float64 relative gains (computed once)."""
        g = np.ones((self.ny, self.nx))
        for r in self.regions:
            g[r.iy, r.ix] = r.gain
        return g

    def at(
        self, x_mm: np.ndarray | float, y_mm: np.ndarray | float, size_mm: float = 60.0
    ) -> np.ndarray:
        """Relative gain at positions (outside the area: the nearest cell)."""
        ix = np.clip(((np.asarray(x_mm) / size_mm + 0.5) * self.nx).astype(int), 0, self.nx - 1)
        iy = np.clip(((np.asarray(y_mm) / size_mm + 0.5) * self.ny).astype(int), 0, self.ny - 1)
        return self.grid[iy, ix]


@dataclass(frozen=True)
class GainParams:
    """Relative gain vs time ([gain]); 1.0 = the nominal [detector] gain."""

    kind: str = param(
        "constant",
        "constant | linear | exponential (geometric start->end) | steps",
        choices=("constant", "linear", "exponential", "steps"),
    )
    start: float = param(1.0, "relative gain before/at delay_s", lo=0.0)
    end: float = param(1.0, "relative gain at delay_s + duration_s and after", lo=0.0)
    delay_s: float = param(0.0, "time the change starts", lo=0.0, unit="s")
    duration_s: float = param(
        3600.0, "time the change takes (CAST: ~1 month, shortened)", lo=0.0, unit="s"
    )
    steps: tuple[tuple[float, float], ...] = param(
        (), "kind=steps: [[t_s, gain], ...] sorted by time; the gain holds from t_s on"
    )
    map: GainMapParams = field(
        default_factory=GainMapParams, metadata={"doc": "gain map", "unit": ""}
    )

    def at(self, t: float) -> float:
        """Relative gain at time t (s)."""
        if self.kind == "constant":
            return self.start
        if self.kind == "steps":
            g = self.start
            for ts, gs in self.steps:
                if t >= ts:
                    g = gs
            return g
        frac = (
            1.0
            if self.duration_s <= 0
            else min(max((t - self.delay_s) / self.duration_s, 0.0), 1.0)
        )
        if self.kind == "linear":
            return self.start + (self.end - self.start) * frac
        if self.start <= 0 or self.end <= 0:
            return self.start if frac < 1.0 else self.end
        return self.start * (self.end / self.start) ** frac


@dataclass(frozen=True)
class ResolutionParams:
    """Optional resolution degradation with the time-dependent gain ([resolution])."""

    follow_gain: bool = param(False, "scale the 5.9 keV FWHM as gain^-exponent (CAST-like)")
    exponent: float = param(
        0.635,
        "0.635 takes 18 % at gain 1.0 to 50 % at gain 0.2, as in the CAST data set",
        lo=0.0,
        hi=5.0,
    )
    max_fwhm: float = param(1.0, "cap of the 5.9 keV FWHM/E", lo=0.0, hi=2.0)

    def fwhm_at(self, base_fwhm: float, rel_gain: float) -> float:
        if not self.follow_gain or rel_gain <= 0:
            return base_fwhm
        return min(base_fwhm * rel_gain ** (-self.exponent), max(self.max_fwhm, base_fwhm))
