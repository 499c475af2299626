"""Emulator physics: pulse shape, kernels vs references, 55Fe spectra and clusters, muons."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.simulation.emulator import pulse
from agetdaq.readout.simulation.emulator.physics import PhysicsModel, compose_raw, compose_raw_py
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.sources import muon_direction

N_XRAY = 2500


@pytest.fixture(scope="module", name="mapping")
def mapping_fixture() -> StripMapping:
    return StripMapping.default()


def model(name: str, mapping: StripMapping, seed: int = 7, **sections) -> PhysicsModel:
    """A model of a shipped scenario, with whole sections or single fields replaced."""
    s = Scenario.load(name)
    for section, changes in sections.items():
        s = dataclasses.replace(s, **{section: dataclasses.replace(getattr(s, section), **changes)})
    return PhysicsModel(s, mapping, seed=seed)


def channel(mapping: StripMapping, strip: int) -> tuple[int, int]:
    return int(mapping.chip[strip]), int(mapping.aget_channel[strip]) - 1


def peak_bin(m: PhysicsModel, truth: dict) -> int:
    return round(truth["arrival_bin"] + m.peaking_ns / m.bin_ns)


def fwhm(values: np.ndarray) -> float:
    return 2.0 * math.sqrt(2.0 * math.log(2.0)) * float(values.std() / values.mean())


# -- pulse shape and kernels -------------------------------------------------------------------


def test_semi_gaussian_peaks_at_one_at_the_peaking_time() -> None:
    t = np.linspace(-100.0, 3000.0, 31001)
    h = pulse.semi_gaussian(t, 500.0, 4)
    assert h.max() == pytest.approx(1.0, abs=1e-6)
    assert t[h.argmax()] == pytest.approx(500.0, abs=0.2)
    assert np.all(h[t <= 0] == 0) and np.all(h >= 0)
    assert pulse.semi_gaussian(np.array([3000.0]), 500.0, 4)[0] < 1e-4


def test_kernel_is_sampled_response() -> None:
    k = pulse.kernel(501.8, 40.0, 4)
    assert k.dtype == np.float32 and k[0] == 0.0
    assert np.allclose(k, pulse.semi_gaussian(np.arange(len(k)) * 40.0, 501.8, 4), atol=1e-6)
    assert len(k) * 40.0 >= 6 * 501.8


def test_bin_charge_matches_a_loop() -> None:
    rng = np.random.default_rng(1)
    n_rows, n = 10, 32
    cols = rng.integers(0, n_rows, (25, 3))
    w = rng.random((25, 3))
    t = rng.uniform(-3.0, n + 3.0, 25)
    got = pulse.bin_charge(cols, w, t, n_rows, n)
    ref = np.zeros((n_rows, n))
    for j in range(25):
        lo = math.floor(t[j])
        for i in range(3):
            for b, f in ((lo, 1 - (t[j] - lo)), (lo + 1, t[j] - lo)):
                if 0 <= b < n:
                    ref[cols[j, i], b] += w[j, i] * f
    assert np.allclose(got, ref)


def test_shaper_matches_direct_convolution() -> None:
    rng = np.random.default_rng(2)
    k = pulse.kernel(232.3, 40.0, 4)
    charge = rng.random((5, 512)) * (rng.random((5, 512)) < 0.05)
    got = pulse.Shaper(k, 512)(charge)
    ref = np.array([np.convolve(row, k)[:512] for row in charge])
    assert np.allclose(got, ref, atol=1e-4)


def test_strip_fractions_sum_to_one_inside_the_area() -> None:
    centres = (np.arange(120) - 59.5) * 0.5
    cols, frac = pulse.strip_fractions(
        np.array([0.1, -7.3, 29.9]),
        np.array([0.5, 0.2, 0.5]),
        centres,
        centres - 0.25,
        centres + 0.25,
    )
    sums = frac.sum(axis=1)
    assert sums[:2] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert 0.5 < sums[2] < 0.7  # a cloud at the edge loses the charge beyond the last strip
    assert centres[cols[0, frac[0].argmax()]] == pytest.approx(0.25)


@pytest.mark.parametrize("with_signal", [False, True])
def test_compose_raw_kernel_matches_reference(with_signal: bool) -> None:
    rng = np.random.default_rng(3)
    ped = rng.normal(250, 30, (4, 68)).astype(np.float32)
    scale = rng.normal(3.5, 1.0, (4, 68)).astype(np.float32)
    bank = rng.standard_normal(100 * 512).astype(np.float32)
    offsets = (rng.integers(0, 90, (4, 68)) * 512 + 17).astype(np.int64)
    cm = rng.normal(0, 2, (4, 512)).astype(np.float32)
    sig_index = np.full((4, 68), -1, dtype=np.int32)
    sig = np.zeros((3, 512), dtype=np.float32)
    if with_signal:
        sig_index[0, 5], sig_index[2, 64], sig_index[3, 0] = 0, 1, 2
        sig[0, 100:110] = 5000.0  # clips at 4095
        sig[1, 200:210] = -900.0  # clips at 0
        sig[2] = rng.normal(0, 300, 512)
    got = np.empty((4, 68, 512), dtype=np.uint16)
    ref = np.empty_like(got)
    compose_raw(ped, scale, bank, offsets, cm, sig_index, sig, got)
    compose_raw_py(ped, scale, bank, offsets, cm, sig_index, sig, ref)
    assert np.array_equal(got, ref)
    if with_signal:
        assert np.all(got[0, 5, 100:110] == 4095) and np.all(got[2, 64, 200:210] == 0)


# -- 55Fe --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fe_events(mapping):
    m = model("default", mapping, seed=11)
    return m, [m.generate("xray", 5.0) for _ in range(N_XRAY)]


def test_fe55_lines_and_escape_fraction(fe_events) -> None:
    m, events = fe_events
    lines = np.array([e.truth["line"] for e in events])
    p_ka, p_kb, p_esc = m.scenario.fe55.line_probabilities()
    for name, p in (("Ka", p_ka), ("Kb", p_kb), ("escape", p_esc)):
        sigma = math.sqrt(p * (1 - p) / len(events))
        assert abs(np.mean(lines == name) - p) < 4 * sigma, name
    assert np.sum(lines == "Kb") / np.sum(lines == "Ka") == pytest.approx(0.14, abs=0.03)


def test_fe55_peak_resolution_from_truth_and_from_raw(fe_events, mapping) -> None:
    m, events = fe_events
    ka = [e for e in events if e.truth["line"] == "Ka"]
    esc = [e for e in events if e.truth["line"] == "escape"]
    truth_sum = np.array([sum(e.truth["amplitude_x"]) + sum(e.truth["amplitude_y"]) for e in ka])
    configured = m.scenario.detector.resolution_fwhm
    assert fwhm(truth_sum) == pytest.approx(configured, rel=0.06)
    x_sum = np.array([sum(e.truth["amplitude_x"]) for e in ka])
    assert 1000 < x_sum.mean() < 2000  # the documented ADC scale of one axis
    esc_sum = np.array([sum(e.truth["amplitude_x"]) + sum(e.truth["amplitude_y"]) for e in esc])
    assert esc_sum.mean() / truth_sum.mean() == pytest.approx(2.94 / 5.90, rel=0.02)

    raw_sum = []
    for e in ka:
        b = peak_bin(m, e.truth)
        chans = [channel(mapping, s) for s in e.truth["strips_x"] + e.truth["strips_y"]]
        raw_sum.append(sum(float(e.raw[c, k, b]) - float(m.pedestal[c, k]) for c, k in chans))
    raw_sum = np.array(raw_sum)
    assert raw_sum.mean() == pytest.approx(truth_sum.mean(), rel=0.01)
    assert fwhm(raw_sum) == pytest.approx(configured, rel=0.07)
    assert fwhm(raw_sum) >= fwhm(truth_sum) * 0.99  # noise only adds


def test_fe55_clusters_have_2_to_8_strips_per_axis_in_raw(fe_events, mapping) -> None:
    m, events = fe_events
    x_strips = np.flatnonzero(np.asarray(mapping.axis) == 0)
    y_strips = np.flatnonzero(np.asarray(mapping.axis) == 1)
    sizes = []
    for e in events[:600]:
        b = peak_bin(m, e.truth)
        for strips in (x_strips, y_strips):
            c, k = np.asarray(mapping.chip)[strips], np.asarray(mapping.aget_channel)[strips] - 1
            signal = e.raw[c, k, b].astype(float) - m.pedestal[c, k]
            sizes.append(int(np.sum(signal > 5 * m.noise[c, k] + 10)))
    sizes = np.array(sizes)
    assert np.mean((sizes >= 2) & (sizes <= 8)) > 0.97
    assert 3 <= np.median(sizes) <= 6


def test_xray_truth_is_consistent(fe_events, mapping) -> None:
    m, events = fe_events
    e = next(ev for ev in events if ev.truth["line"] == "Ka")
    t = e.truth
    assert json.loads(json.dumps(t)) == t
    assert t["kind"] == "xray" and t["energy_kev"] == pytest.approx(5.90)
    assert abs(t["x_mm"]) <= 5 and abs(t["y_mm"]) <= 5  # the default spot
    assert 0 <= t["drift_time_us"] <= 30.0 / 30.0 + 1e-9
    assert t["n_electrons"] == pytest.approx(5900 / 26, rel=0.2)
    assert all(0 <= s < 120 for s in t["strips_x"]) and all(120 <= s < 240 for s in t["strips_y"])
    xs = np.array(t["strips_x"])
    centroid = np.average(np.asarray(mapping.position_mm)[xs], weights=t["amplitude_x"])
    assert centroid == pytest.approx(t["x_mm"], abs=0.3)
    assert e.raw.dtype == np.uint16 and e.raw.shape == (4, 68, m.n_samples)
    b = peak_bin(m, t)
    c, k = channel(mapping, xs[int(np.argmax(t["amplitude_x"]))])
    assert e.raw[c, k].argmax() == pytest.approx(b, abs=2)
    tol = 5 * math.hypot(float(m.noise[c, k]), m.scenario.noise.common_mode_sigma) + 1
    assert float(e.raw[c, k, b]) - m.pedestal[c, k] == pytest.approx(max(t["amplitude_x"]), abs=tol)


def test_cloud_depth_follows_the_absorption_length(fe_events) -> None:
    _, events = fe_events
    depth = 30.0 - np.array([e.truth["z_mm"] for e in events])
    trunc = stats.truncexpon(b=30.0 / 16.0, scale=16.0)
    assert stats.kstest(depth, trunc.cdf).pvalue > 1e-3


# -- muons -------------------------------------------------------------------------------------


def test_muon_tracks_are_long_and_spread_in_time(mapping) -> None:
    m = model("background", mapping, seed=5)
    events = [m.generate("muon", 1.0) for _ in range(150)]
    n_strips = np.array([max(len(e.truth["strips_x"]), len(e.truth["strips_y"])) for e in events])
    assert np.median(n_strips) >= 12
    assert np.median([e.truth["energy_kev"] for e in events]) > 6.0
    for e in events[:20]:
        t = e.truth
        assert json.loads(json.dumps(t)) == t
        assert 0 <= t["theta_deg"] < 90 and t["track_length_mm"] > 0
        assert t["drift_time_min_us"] <= t["drift_time_us"] <= t["drift_time_max_us"]
    long_dz = [
        e for e in events if e.truth["drift_time_max_us"] - e.truth["drift_time_min_us"] > 0.6
    ]
    e = max(long_dz, key=lambda ev: len(ev.truth["strips_x"]))
    strips = np.array(e.truth["strips_x"])[np.array(e.truth["amplitude_x"]) > 40]
    peaks = [e.raw[channel(mapping, s)].argmax() for s in strips]
    assert max(peaks) - min(peaks) >= 10  # ~0.6 us over 40 ns bins


def test_muon_zenith_angle_is_cos2() -> None:
    rng = np.random.default_rng(4)
    params = Scenario.load("default").muon
    cos_t = np.array([math.cos(math.radians(muon_direction(params, rng)[0])) for _ in range(20000)])
    assert stats.kstest(cos_t, lambda u: u**3).pvalue > 1e-3  # I ~ cos^2: P(cos < u) = u^3


def test_tilted_detector_sees_muons_along_y() -> None:
    rng = np.random.default_rng(6)
    params = dataclasses.replace(Scenario.load("default").muon, tilt_deg=90.0)
    d = np.array([muon_direction(params, rng)[2] for _ in range(5000)])
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    assert np.abs(d[:, 1]).mean() == pytest.approx(0.75, abs=0.02)  # E[cos(zenith)] for cos^2
    assert np.abs(d[:, 2]).mean() < 0.5
