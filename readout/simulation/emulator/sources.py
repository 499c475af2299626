"""Event sources: Poisson arrival times, 55Fe X-ray conversions and cosmic-muon tracks.

Detector frame: x, y in mm across the strip plane (centre 0), z = drift distance in mm from the mesh
(0) to the cathode window (drift_length_mm). X-rays enter through the window, so their conversion
depth from the window is exponential with the absorption length, truncated to the drift gap.
Muon directions are drawn in the world frame (z up) and rotated by the detector tilt about x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agetdaq.readout.simulation.emulator.params import DetectorParams, Fe55Params, MuonParams

MAX_MUON_TRIES = 10_000
MOYAL_FACTOR_RANGE = (0.3, 10.0)  # clip of the whole-track energy-loss factor


def poisson_times(rate_hz: float, t0: float, t1: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival times of a Poisson process of ``rate_hz`` in [t0, t1) (s)."""
    if rate_hz <= 0 or t1 <= t0:
        return np.empty(0)
    n = rng.poisson(rate_hz * (t1 - t0))
    return np.sort(rng.uniform(t0, t1, n))


@dataclass(frozen=True)
class XrayHit:
    """One photon conversion: deposited energy, its line, and where it happened."""

    energy_kev: float
    line: str  # 'Ka' | 'Kb' | 'escape'
    x_mm: float
    y_mm: float
    z_mm: float  # drift distance to the mesh


def conversion_depth(det: DetectorParams, rng: np.random.Generator) -> float:
    """Depth below the window (mm): exponential with the absorption length, inside the gap."""
    length = det.drift_length_mm
    lam = det.absorption_length_mm
    u = rng.random()
    if lam <= 0:
        return u * length
    return -lam * math.log1p(-u * (1.0 - math.exp(-length / lam)))


def draw_xray(src: Fe55Params, det: DetectorParams, rng: np.random.Generator) -> XrayHit:
    """One 55Fe conversion: line by its probability, position over the spot or the full area.

    The K-beta escape (~3.5 keV, ~1/7 of the escapes) is not modelled separately.
    """
    p_ka, p_kb, _ = src.line_probabilities()
    u = rng.random()
    if u < p_ka:
        line, energy = "Ka", src.ka_kev
    elif u < p_ka + p_kb:
        line, energy = "Kb", src.kb_kev
    else:
        line, energy = "escape", src.escape_kev
    half = det.active_size_mm / 2.0
    if src.area == "full":
        x, y = rng.uniform(-half, half, 2)
    else:
        r = src.radius_mm * math.sqrt(rng.random())
        a = rng.uniform(0.0, 2.0 * math.pi)
        x = src.centre_mm[0] + r * math.cos(a)
        y = src.centre_mm[1] + r * math.sin(a)
    z = det.drift_length_mm - conversion_depth(det, rng)
    return XrayHit(energy, line, float(x), float(y), float(z))


@dataclass(frozen=True)
class MuonTrack:
    """A straight track clipped to the drift volume."""

    entry_mm: np.ndarray  # (3,) x, y, z where the muon enters the volume
    exit_mm: np.ndarray  # (3,)
    theta_deg: float  # world zenith angle
    phi_deg: float  # world azimuth (0 = along +x)

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.exit_mm - self.entry_mm))


def muon_direction(src: MuonParams, rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """(theta, phi, unit direction of travel in the detector frame).

    Intensity per solid angle ~ cos^n(theta): cos(theta) = U^(1/(n+1)). The flux through the
    volume's projected area is accounted for by the disc sampling in :func:`draw_muon`.
    """
    cos_t = rng.random() ** (1.0 / (src.zenith_power + 1.0))
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    phi = rng.uniform(0.0, 2.0 * math.pi)
    d_world = np.array([sin_t * math.cos(phi), sin_t * math.sin(phi), -cos_t])
    tilt = math.radians(src.tilt_deg)
    c, s = math.cos(tilt), math.sin(tilt)
    d = np.array([d_world[0], c * d_world[1] - s * d_world[2], s * d_world[1] + c * d_world[2]])
    return math.degrees(math.acos(cos_t)), math.degrees(phi), d


def _slab_interval(
    p0: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[float, float]:
    s_in, s_out = -math.inf, math.inf
    for k in range(3):
        if abs(d[k]) < 1e-12:
            if not lo[k] <= p0[k] <= hi[k]:
                return 1.0, 0.0
            continue
        a, b = (lo[k] - p0[k]) / d[k], (hi[k] - p0[k]) / d[k]
        s_in, s_out = max(s_in, min(a, b)), min(s_out, max(a, b))
    return s_in, s_out


def draw_muon(src: MuonParams, det: DetectorParams, rng: np.random.Generator) -> MuonTrack:
    """A muon crossing the drift volume, uniform in flux: the line passes a random point of a disc
    perpendicular to its direction that covers the volume; lines that miss it are redrawn."""
    half = det.active_size_mm / 2.0
    lo = np.array([-half, -half, 0.0])
    hi = np.array([half, half, det.drift_length_mm])
    centre = (lo + hi) / 2.0
    radius = float(np.linalg.norm(hi - centre))
    for _ in range(MAX_MUON_TRIES):
        theta, phi, d = muon_direction(src, rng)
        u = np.cross(d, [1.0, 0.0, 0.0] if abs(d[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(d, u)
        r = radius * math.sqrt(rng.random())
        a = rng.uniform(0.0, 2.0 * math.pi)
        p0 = centre + r * (math.cos(a) * u + math.sin(a) * v)
        s_in, s_out = _slab_interval(p0, d, lo, hi)
        if s_out - s_in > 1e-6:
            return MuonTrack(p0 + s_in * d, p0 + s_out * d, theta, phi)
    raise RuntimeError(
        "no muon track hit the volume"
    )  # pragma: no cover - geometry guarantees hits


def moyal(rng: np.random.Generator) -> float:
    """A standard Moyal variate (mode 0): -ln(Z^2) with Z standard normal."""
    z = rng.standard_normal()
    return -math.log(max(z * z, 1e-300))


def muon_deposits(
    track: MuonTrack, src: MuonParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(points (m, 3) mm, energy (m,) keV): equal steps along the track.

    The whole track's energy is dE/dx (most probable) x length x a Moyal factor
    ``1 + landau_width * X`` clipped to MOYAL_FACTOR_RANGE; delta rays are not modelled.
    """
    length = track.length_mm
    m = max(1, math.ceil(length / src.step_mm))
    frac = (np.arange(m) + 0.5) / m
    points = track.entry_mm[None, :] + frac[:, None] * (track.exit_mm - track.entry_mm)[None, :]
    factor = min(
        max(1.0 + src.landau_width * moyal(rng), MOYAL_FACTOR_RANGE[0]), MOYAL_FACTOR_RANGE[1]
    )
    total = src.dedx_kev_per_cm / 10.0 * length * factor
    return points, np.full(m, total / m)
