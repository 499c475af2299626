"""The physics model of the emulated detector: raw AGET waveforms with their truth.

Signal chain of one event: source (sources.py) -> primary electrons E/W with Fano fluctuation ->
avalanche (gamma-distributed sum, gain x time curve x gain map) -> split between the X and Y
layers -> Gaussian transverse diffusion integrated over 0.5 mm strips -> drift time ->
CR-RC^n pulse (pulse.py) -> + pedestal + channel noise + per-chip common mode -> 12-bit clip.

Resolution: the avalanche relative variance per electron ``b`` is set so that the X+Y charge of a
5.9 keV line has the configured FWHM: (F + b) / N = (FWHM / 2.355)^2 with N = 5900 eV / W.
Electronic noise then adds a little (< 1 % FWHM at nominal gain).

Timing: charge created at t = 0 and drifting z mm reaches the strips at
``trigger_bin + z / v_drift`` bins, i.e. the window is placed as for a prompt trigger.

Noise fast path: with ``noise.noise_bank_samples > 0`` the white channel noise is read from a
pre-generated bank of unit normals (normalised to mean 0, sigma 1): each of the 272 rows of an event
takes a distinct 512-sample slot (slot = a + b*row mod n_slots, a random, b random odd), all shifted
by one random offset, with a random sign per row. Within an event no two rows share samples, so
per-channel means, sigmas and cross-channel correlations are right. Across events samples recur
(a bank of 2^22 holds ~30 events of fresh noise) on other channels, offsets and signs: averages
over many events (pedestals, noise, spectra) are unaffected, but strictly the noise of different
events is not independent. ``noise_bank_samples = 0`` draws fresh noise (~3x slower).
Simplifications: channel noise is white (not coloured by the shaper); the common mode is a
moving average of white noise, identical on the 68 channels of a chip.

Not thread-safe: one model per generating thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agetdaq.readout.simulation.emulator import pulse
from agetdaq.readout.simulation.emulator.compose import ADC_MAX, compose_raw, compose_raw_py
from agetdaq.readout.simulation.emulator.params import (
    N_CHANNELS,
    N_CHIPS,
    N_SAMPLES,
    PEAKING_TIME_NS,
)
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.sources import (
    draw_muon,
    draw_xray,
    muon_deposits,
    poisson_times,
)

if TYPE_CHECKING:
    from agetdaq.protocol.mapping import StripMapping

__all__ = [
    "ADC_MAX",
    "E_FC",
    "TRUTH_MIN_ADC",
    "GeneratedEvent",
    "PhysicsModel",
    "compose_raw",
    "compose_raw_py",
]

E_FC = 1.602176634e-4  # electron charge in fC
TRUTH_MIN_ADC = 0.5  # a strip counts as hit in the truth when its true amplitude reaches this


@dataclass
class GeneratedEvent:
    """Raw ADC of all 4 x 68 channels and the truth behind them."""

    raw: np.ndarray  # uint16 (4, 68, n_samples)
    truth: dict


class PhysicsModel:
    """Generates events of a scenario on a given strip mapping; reproducible from ``seed``."""

    def __init__(self, scenario: Scenario, mapping: StripMapping, seed: int = 0) -> None:
        self.scenario = scenario
        self.mapping = mapping
        self.seed = seed
        self.n_samples = N_SAMPLES
        self._rng = np.random.default_rng([seed, 1])  # events
        self._arrival_rng = np.random.default_rng([seed, 3])
        self._init_strips()
        self._init_channels(np.random.default_rng([seed, 0]))
        self._init_bank(np.random.default_rng([seed, 2]))
        det = scenario.detector
        self.configure(det.wckdiv, det.peaking_time_code)

    # -- set-up ---------------------------------------------------------------------------

    def _init_strips(self) -> None:
        m = self.mapping
        self._strip_chip = np.asarray(m.chip, dtype=np.int64)
        self._strip_row = np.asarray(m.aget_channel, dtype=np.int64) - 1
        axis = np.asarray(m.axis)
        self._strip_axis = axis
        pos = np.asarray(m.position_mm, dtype=np.float64)
        self._axis_strips = []  # per axis: global strip numbers sorted by position
        self._axis_geom = []  # per axis: (centres, lo edges, hi edges) in mm
        for a in (0, 1):
            idx = np.flatnonzero(axis == a)
            idx = idx[np.argsort(pos[idx])]
            p = pos[idx]
            pitch = float(np.median(np.diff(p))) if len(p) > 1 else 0.5
            self._axis_strips.append(idx)
            self._axis_geom.append((p, p - pitch / 2.0, p + pitch / 2.0))

    def _init_channels(self, rng: np.random.Generator) -> None:
        nz = self.scenario.noise
        shape = (N_CHIPS, N_CHANNELS)
        ped = rng.normal(nz.pedestal_mean, nz.pedestal_spread, shape)
        self.pedestal = np.clip(ped, 0, ADC_MAX).astype(np.float32)
        sigma = np.maximum(rng.normal(nz.sigma_mean, nz.sigma_spread, shape), nz.sigma_min)
        n_strips = len(self._strip_chip)
        dead = self._pick(rng, nz.dead_strips, nz.dead_random, n_strips, ())
        noisy = self._pick(rng, nz.noisy_strips, nz.noisy_random, n_strips, dead)
        self.dead_strips = dead
        self.noisy_strips = noisy
        sigma[self._strip_chip[noisy], self._strip_row[noisy]] *= nz.noisy_factor
        sigma[self._strip_chip[dead], self._strip_row[dead]] = nz.dead_sigma
        self.noise = sigma.astype(np.float32)
        self._strip_live = np.ones(n_strips, dtype=bool)
        self._strip_live[dead] = False

    @staticmethod
    def _pick(rng, listed, n_random, n_strips, exclude) -> np.ndarray:
        chosen = set(int(s) for s in listed if 0 <= s < n_strips)
        pool = np.setdiff1d(
            np.arange(n_strips), np.array(sorted(chosen | set(exclude)), dtype=np.int64)
        )
        if n_random > 0 and len(pool):
            chosen |= set(rng.choice(pool, min(n_random, len(pool)), replace=False).tolist())
        return np.array(sorted(chosen), dtype=np.int64)

    def _init_bank(self, rng: np.random.Generator) -> None:
        slots = self.scenario.noise.noise_bank_samples // N_SAMPLES
        # a power of two, so that a + odd * row (mod n_slots) never repeats within an event
        self._n_slots = 1 << (slots.bit_length() - 1) if slots else 0
        if self._n_slots < N_CHIPS * N_CHANNELS:
            self._bank = None  # too small to give every row its own slot: exact path
            return
        n = self._n_slots * N_SAMPLES
        bank = np.empty(n + N_SAMPLES, dtype=np.float32)  # + a copy of the head for the shift
        rng.standard_normal(n, dtype=np.float32, out=bank[:n])
        bank[:n] -= np.float32(bank[:n].mean(dtype=np.float64))
        bank[:n] /= np.float32(bank[:n].std(dtype=np.float64))
        bank[n:] = bank[:N_SAMPLES]
        self._bank = bank

    def configure(self, wckdiv: int | None = None, peaking_time_code: int | None = None) -> None:
        """Follow the card's SCA clock divider and AGET peaking time (e.g. after ``sca wckdiv``)."""
        det = self.scenario.detector
        self.wckdiv = int(wckdiv if wckdiv is not None else det.wckdiv)
        self.peaking_time_code = int(
            peaking_time_code if peaking_time_code is not None else det.peaking_time_code
        )
        if not 1 <= self.wckdiv <= 63 or not 0 <= self.peaking_time_code <= 15:
            raise ValueError(
                f"wckdiv 1..63 and peaking code 0..15, got {wckdiv}, {peaking_time_code}"
            )
        self.bin_ns = 10.0 * self.wckdiv
        self.peaking_ns = PEAKING_TIME_NS[self.peaking_time_code]
        self._shaper = pulse.Shaper(
            pulse.kernel(self.peaking_ns, self.bin_ns, det.shaper_order), N_SAMPLES
        )

    # -- contract -------------------------------------------------------------------------

    def gain_at(self, time_s: float) -> float:
        """Relative gain (1.0 = nominal) at time_s, from the scenario's gain curve."""
        return float(self.scenario.gain.at(time_s))

    def noise_multiplier_at(self, time_s: float) -> float:
        return self.scenario.noise.multiplier_at(time_s)

    def arrivals(self, t0: float, t1: float) -> list[tuple[float, str]]:
        """Physics interaction times in [t0, t1) (s), Poisson at the scenario rates, sorted."""
        rng = self._arrival_rng
        xr = poisson_times(self.scenario.fe55.rate_hz, t0, t1, rng)
        mu = poisson_times(self.scenario.muon.rate_hz, t0, t1, rng)
        out = [(float(t), "xray") for t in xr] + [(float(t), "muon") for t in mu]
        out.sort()
        return out

    def generate(self, kind: str, time_s: float) -> GeneratedEvent:
        """One event of ``kind`` ('xray' | 'muon' | 'pedestal') at time_s (s)."""
        if kind == "xray":
            strips, waves, truth = self._xray(time_s)
        elif kind == "muon":
            strips, waves, truth = self._muon(time_s)
        elif kind == "pedestal":
            strips, waves, truth = np.empty(0, np.int64), np.empty((0, N_SAMPLES), np.float32), {}
        else:
            raise ValueError(f"unknown event kind {kind!r} (xray, muon, pedestal)")
        raw = self._compose(strips, waves, time_s)
        base = {
            "kind": kind,
            "time_s": float(time_s),
            "energy_kev": 0.0,
            "line": None,
            "x_mm": None,
            "y_mm": None,
            "gain": None,
            "gain_time": self.gain_at(time_s),
            "n_electrons": 0,
            "strips_x": [],
            "strips_y": [],
            "amplitude_x": [],
            "amplitude_y": [],
            "drift_time_us": None,
        }
        base.update(truth)
        return GeneratedEvent(raw, base)

    # -- physics --------------------------------------------------------------------------

    def _drift_bins(self, z_mm: np.ndarray | float) -> np.ndarray | float:
        det = self.scenario.detector
        return det.trigger_bin + z_mm / det.drift_velocity_mm_per_us * 1000.0 / self.bin_ns

    def _cloud_sigma(self, z_mm: np.ndarray | float) -> np.ndarray | float:
        det = self.scenario.detector
        depth = np.clip(np.asarray(z_mm, dtype=np.float64) / det.drift_length_mm, 0.0, None)
        return np.sqrt(det.diffusion_sigma_mm**2 * depth + det.diffusion_floor_mm**2)

    def _axis_charge(
        self, axis: int, pos_mm: np.ndarray, sigma_mm: np.ndarray, adc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Clouds of ``adc`` (peak ADC if on one strip) at positions along ``axis``, spread over
        its strips: (cols (m, w) strip positions, amplitudes (m, w))."""
        cols, frac = pulse.strip_fractions(pos_mm, sigma_mm, *self._axis_geom[axis])
        return cols, frac * np.asarray(adc, dtype=np.float64).reshape(-1, 1)

    def _fluctuation_b(self, rel_gain: float) -> float:
        det = self.scenario.detector
        fwhm = self.scenario.resolution.fwhm_at(det.resolution_fwhm, rel_gain)
        return max(det.fluctuation_b(fwhm), 1e-6)

    def _split_x(self) -> float:
        det = self.scenario.detector
        return float(np.clip(self._rng.normal(det.xy_share, det.xy_share_sigma), 0.0, 1.0))

    def _xray(self, time_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
        s, rng = self.scenario, self._rng
        det = s.detector
        hit = draw_xray(s.fe55, det, rng)
        g_time = self.gain_at(time_s)
        g_map = float(s.gain.map.at(hit.x_mm, hit.y_mm, det.active_size_mm))
        n_mean = hit.energy_kev * 1000.0 / det.w_value_ev
        n_e = max(1, round(rng.normal(n_mean, math.sqrt(det.fano * n_mean))))
        b = self._fluctuation_b(g_time)
        q_fc = rng.gamma(n_e / b, det.gain * g_time * g_map * b) * E_FC
        fx = self._split_x()
        sigma = self._cloud_sigma(hit.z_mm)
        strips, amps = [], []
        for axis, pos, share in ((0, hit.x_mm, fx), (1, hit.y_mm, 1.0 - fx)):
            cols, amp = self._axis_charge(axis, pos, sigma, q_fc * share * det.adc_per_fc)
            keep = amp[0] >= 1e-3 * TRUTH_MIN_ADC
            strips.append(self._axis_strips[axis][cols[0, keep]])
            amps.append(amp[0, keep])
        strips, amp = np.concatenate(strips), np.concatenate(amps)
        t0 = float(self._drift_bins(hit.z_mm))
        waves = pulse.pulses_at(amp, t0, N_SAMPLES, self.bin_ns, self.peaking_ns, det.shaper_order)
        truth = {
            "energy_kev": hit.energy_kev,
            "line": hit.line,
            "x_mm": hit.x_mm,
            "y_mm": hit.y_mm,
            "z_mm": hit.z_mm,
            "gain": g_time * g_map,
            "gain_time": g_time,
            "gain_map": g_map,
            "n_electrons": int(n_e),
            "charge_fc": float(q_fc),
            "x_share": fx,
            "cloud_sigma_mm": float(sigma),
            "drift_time_us": hit.z_mm / det.drift_velocity_mm_per_us,
            "arrival_bin": t0,
        }
        truth.update(self._strip_truth(strips, waves))
        return strips, waves, truth

    def _muon(self, time_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
        s, rng = self.scenario, self._rng
        det = s.detector
        track = draw_muon(s.muon, det, rng)
        pts, e_kev = muon_deposits(track, s.muon, rng)
        g_time = self.gain_at(time_s)
        g_map = np.asarray(
            s.gain.map.at(pts[:, 0], pts[:, 1], det.active_size_mm), dtype=np.float64
        )
        n_e = e_kev * 1000.0 / det.w_value_ev
        b = self._fluctuation_b(g_time)
        q_fc = rng.gamma(n_e / b, det.gain * g_time * g_map * b) * E_FC
        fx = self._split_x()
        sigma = self._cloud_sigma(pts[:, 2])
        t_bins = self._drift_bins(pts[:, 2])
        strips, charge = [], []
        for axis, share in ((0, fx), (1, 1.0 - fx)):
            cols, amp = self._axis_charge(axis, pts[:, axis], sigma, q_fc * share * det.adc_per_fc)
            n_axis = len(self._axis_strips[axis])
            per_strip = pulse.bin_charge(cols, amp, t_bins, n_axis, N_SAMPLES)
            active = np.flatnonzero(per_strip.sum(axis=1) >= 1e-3 * TRUTH_MIN_ADC)
            strips.append(self._axis_strips[axis][active])
            charge.append(per_strip[active])
        strips_all = np.concatenate(strips)
        waves = self._shaper(np.concatenate(charge))
        drift_us = pts[:, 2] / det.drift_velocity_mm_per_us
        mid = (track.entry_mm + track.exit_mm) / 2.0
        truth = {
            "energy_kev": float(e_kev.sum()),
            "x_mm": float(mid[0]),
            "y_mm": float(mid[1]),
            "z_mm": float(mid[2]),
            "gain": float(g_time * g_map.mean()),
            "gain_time": g_time,
            "gain_map": float(g_map.mean()),
            "n_electrons": round(float(n_e.sum())),
            "charge_fc": float(q_fc.sum()),
            "x_share": fx,
            "drift_time_us": float(mid[2] / det.drift_velocity_mm_per_us),
            "drift_time_min_us": float(drift_us.min()),
            "drift_time_max_us": float(drift_us.max()),
            "theta_deg": track.theta_deg,
            "phi_deg": track.phi_deg,
            "track_length_mm": track.length_mm,
            "entry_mm": [float(v) for v in track.entry_mm],
            "exit_mm": [float(v) for v in track.exit_mm],
        }
        truth.update(self._strip_truth(strips_all, waves))
        return strips_all, waves, truth

    def _strip_truth(self, strips: np.ndarray, waves: np.ndarray) -> dict:
        """Hit strips (live, true amplitude >= TRUTH_MIN_ADC) and their noiseless peak ADC."""
        peak = waves.max(axis=1) if len(waves) else np.empty(0)
        hit = (peak >= TRUTH_MIN_ADC) & self._strip_live[strips]
        axis = self._strip_axis[strips]
        out: dict = {}
        for name, a in (("x", 0), ("y", 1)):
            sel = hit & (axis == a)
            out[f"strips_{name}"] = [int(v) for v in strips[sel]]
            out[f"amplitude_{name}"] = [round(float(v), 3) for v in peak[sel]]
        ped = self.pedestal[self._strip_chip[strips], self._strip_row[strips]]
        room = ped if self.scenario.detector.polarity == 0 else ADC_MAX - ped
        out["saturated"] = bool(np.any(peak[hit] > room[hit]))
        return out

    # -- waveforms ------------------------------------------------------------------------

    def _common_mode(self, mult: float) -> np.ndarray:
        nz = self.scenario.noise
        n = nz.common_mode_corr_bins
        w = self._rng.standard_normal((N_CHIPS, N_SAMPLES + n - 1))
        if n > 1:
            c = np.concatenate([np.zeros((N_CHIPS, 1)), np.cumsum(w, axis=1)], axis=1)
            w = (c[:, n:] - c[:, :-n]) / math.sqrt(n)
        return (w * (nz.common_mode_sigma * mult)).astype(np.float32)

    def _compose(self, strips: np.ndarray, waves: np.ndarray, time_s: float) -> np.ndarray:
        rng = self._rng
        mult = self.noise_multiplier_at(time_s)
        live = self._strip_live[strips]
        strips, waves = strips[live], waves[live]
        if self.scenario.detector.polarity == 0:
            waves = -waves
        sig = np.ascontiguousarray(waves, dtype=np.float32).reshape(-1, N_SAMPLES)
        sig_index = np.full((N_CHIPS, N_CHANNELS), -1, dtype=np.int32)
        sig_index[self._strip_chip[strips], self._strip_row[strips]] = np.arange(len(strips))
        n_rows = N_CHIPS * N_CHANNELS
        scale = self.noise * np.float32(mult)
        if self._bank is not None:
            a = int(rng.integers(self._n_slots))
            step = 2 * int(rng.integers(self._n_slots // 2)) + 1
            slots = (a + step * np.arange(n_rows, dtype=np.int64)) % self._n_slots
            offsets = (slots * N_SAMPLES + int(rng.integers(N_SAMPLES))).reshape(
                N_CHIPS, N_CHANNELS
            )
            flip = rng.random((N_CHIPS, N_CHANNELS), dtype=np.float32) < 0.5
            scale = np.where(flip, -scale, scale)
            bank = self._bank
        else:
            bank = rng.standard_normal(n_rows * N_SAMPLES, dtype=np.float32)
            offsets = (np.arange(n_rows, dtype=np.int64) * N_SAMPLES).reshape(N_CHIPS, N_CHANNELS)
        out = np.empty((N_CHIPS, N_CHANNELS, N_SAMPLES), dtype=np.uint16)
        compose_raw(
            self.pedestal,
            scale.astype(np.float32, copy=False),
            bank,
            offsets,
            self._common_mode(mult),
            sig_index,
            sig,
            out,
        )
        return out
