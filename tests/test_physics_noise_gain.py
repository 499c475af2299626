"""Emulator physics: pedestals and noise, gain drift and gain map, arrival rates, seeding,
polarity, SCA clock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from test_physics import (
    channel,
    fwhm,
    mapping_fixture,  # noqa: F401 (the "mapping" fixture)
    model,
    peak_bin,
)

from agetdaq.readout.simulation.emulator.params import NoiseParams
from agetdaq.readout.simulation.emulator.physics import PhysicsModel

# -- noise -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bank", [True, False], ids=["bank", "fresh"])
def test_pedestal_events_have_the_configured_means_and_sigmas(mapping, bank: bool) -> None:
    extra = {} if bank else {"noise": {"noise_bank_samples": 0}}
    m = model("pedestal", mapping, seed=9, **extra)
    nz = m.scenario.noise
    raw = np.stack([m.generate("pedestal", 1.0).raw for _ in range(150)]).astype(np.float64)
    mean = raw.mean(axis=(0, 3))
    std = raw.std(axis=(0, 3))
    assert np.allclose(mean, m.pedestal, atol=0.6)
    expect = np.sqrt(m.noise.astype(float) ** 2 + nz.common_mode_sigma**2 + 1 / 12)
    assert np.allclose(std / expect, 1.0, atol=0.06)
    assert m.pedestal.mean() == pytest.approx(nz.pedestal_mean, abs=4 * nz.pedestal_spread / 16)
    assert m.pedestal.std() == pytest.approx(nz.pedestal_spread, rel=0.2)
    assert m.noise.mean() == pytest.approx(nz.sigma_mean, abs=0.15)


def test_common_mode_is_shared_within_a_chip_including_fpn(mapping) -> None:
    m = model("pedestal", mapping, seed=10, noise={"common_mode_sigma": 4.0})
    raw = np.stack([m.generate("pedestal", 1.0).raw for _ in range(120)]).astype(np.float64)
    x = raw - raw.mean(axis=(0, 3), keepdims=True)
    x = x.transpose(1, 2, 0, 3).reshape(4, 68, -1)
    fpn = x[0, 64:68].mean(axis=0)
    same_chip = np.array([np.corrcoef(fpn, x[0, k])[0, 1] for k in range(64)])
    other_chip = np.array([np.corrcoef(fpn, x[1, k])[0, 1] for k in range(64)])
    assert same_chip.mean() > 0.5 and same_chip.min() > 0.3
    assert abs(other_chip.mean()) < 0.03
    assert (
        abs(
            np.corrcoef(x[2, 3], x[2, 40])[0, 1]
            - 16 / math.sqrt((float(m.noise[2, 3]) ** 2 + 16) * (float(m.noise[2, 40]) ** 2 + 16))
        )
        < 0.05
    )


def test_dead_and_noisy_strips(mapping) -> None:
    m = model("noisy", mapping, seed=12)
    nz = m.scenario.noise
    assert set(nz.dead_strips) <= set(m.dead_strips.tolist())
    assert len(m.dead_strips) == len(nz.dead_strips) + nz.dead_random
    assert len(m.noisy_strips) == len(nz.noisy_strips) + nz.noisy_random
    assert not set(m.dead_strips.tolist()) & set(m.noisy_strips.tolist())
    for s in m.dead_strips:
        assert m.noise[channel(mapping, s)] == pytest.approx(nz.dead_sigma)
    noisy = np.array([m.noise[channel(mapping, s)] for s in m.noisy_strips])
    assert noisy.mean() > 3 * nz.sigma_mean
    hit_dead = m.generate("xray", 1.0)
    dead = int(m.dead_strips[0])
    pos = float(np.asarray(mapping.position_mm)[dead])
    centre = (pos, 0.0) if dead < 120 else (0.0, pos)
    m2 = model("noisy", mapping, seed=12, fe55={"centre_mm": centre, "radius_mm": 0.0})
    for _ in range(20):
        hit_dead = m2.generate("xray", 1.0)
        assert dead not in hit_dead.truth["strips_x"] + hit_dead.truth["strips_y"]
        wave = (
            hit_dead.raw[channel(mapping, dead)].astype(float) - m2.pedestal[channel(mapping, dead)]
        )
        assert np.abs(wave).max() < 6 * nz.common_mode_sigma + 5


def test_noise_follows_its_time_multiplier(mapping) -> None:
    m = model("noisy", mapping, seed=13)
    quiet = np.stack([m.generate("pedestal", 50.0).raw for _ in range(40)]).astype(float)
    burst = np.stack([m.generate("pedestal", 150.0).raw for _ in range(40)]).astype(float)
    ratio = burst[:, 1, 10].std() / quiet[:, 1, 10].std()
    assert ratio == pytest.approx(2.0, rel=0.1)


# -- gain --------------------------------------------------------------------------------------


def mean_ka_sum(m: PhysicsModel, t: float, n: int = 400) -> tuple[float, float]:
    sums = []
    while len(sums) < n:
        e = m.generate("xray", t)
        if e.truth["line"] == "Ka":
            sums.append(sum(e.truth["amplitude_x"]) + sum(e.truth["amplitude_y"]))
    a = np.array(sums)
    return float(a.mean()), fwhm(a)


def test_gain_drift_follows_the_curve_with_resolution(mapping) -> None:
    m = model("gain-drift", mapping, seed=14, fe55={"area": "spot"})
    curve = m.scenario.gain
    times = (0.0, 60.0, 360.0, 660.0, 5000.0)
    expect = [1.0, 1.0, math.sqrt(0.2), 0.2, 0.2]
    assert [m.gain_at(t) for t in times] == pytest.approx(expect)
    assert curve.kind == "exponential"
    a0, r0 = mean_ka_sum(m, 0.0)
    a1, r1 = mean_ka_sum(m, 700.0)
    assert a1 / a0 == pytest.approx(0.2, rel=0.03)
    assert r0 == pytest.approx(0.18, rel=0.1)
    assert r1 == pytest.approx(0.50, rel=0.1)  # CAST: ~50 % FWHM at 20 % gain
    e = m.generate("xray", 700.0)
    assert e.truth["gain"] == pytest.approx(0.2) and e.truth["gain_time"] == pytest.approx(0.2)


def test_gain_drop_20_is_a_step(mapping) -> None:
    m = model("gain-drop-20", mapping, seed=15)
    assert m.gain_at(59.999) == 1.0 and m.gain_at(60.0) == pytest.approx(0.8)


def test_gain_map_region_has_ten_percent_less_amplitude(mapping) -> None:
    inside = model(
        "gain-map",
        mapping,
        seed=16,
        fe55={"area": "spot", "centre_mm": (15.0, -15.0), "radius_mm": 4.0},
    )
    outside = model(
        "gain-map",
        mapping,
        seed=17,
        fe55={"area": "spot", "centre_mm": (-15.0, 15.0), "radius_mm": 4.0},
    )
    a_in, _ = mean_ka_sum(inside, 1.0, 500)
    a_out, _ = mean_ka_sum(outside, 1.0, 500)
    assert a_in / a_out == pytest.approx(0.90, abs=0.015)
    assert inside.generate("xray", 1.0).truth["gain_map"] == pytest.approx(0.9)


# -- model behaviour ---------------------------------------------------------------------------


def test_arrivals_are_poisson_at_the_scenario_rates(mapping) -> None:
    m = model("calibration", mapping, seed=18)
    arr = m.arrivals(10.0, 210.0)
    times = np.array([t for t, _ in arr])
    kinds = [k for _, k in arr]
    assert np.all(np.diff(times) >= 0) and times.min() >= 10.0 and times.max() < 210.0
    n_x, n_mu = kinds.count("xray"), kinds.count("muon")
    assert abs(n_x - 20000) < 5 * math.sqrt(20000)
    assert abs(n_mu - 120) < 5 * math.sqrt(120)
    gaps = np.diff(times[[k == "xray" for k in kinds]])
    assert stats.kstest(gaps, stats.expon(scale=1 / 100.0).cdf).pvalue > 1e-3
    assert model("pedestal", mapping).arrivals(0.0, 100.0) == []


def test_same_seed_same_events_and_pedestals(mapping) -> None:
    a, b = model("default", mapping, seed=3), model("default", mapping, seed=3)
    assert np.array_equal(a.pedestal, b.pedestal) and np.array_equal(a.noise, b.noise)
    for kind in ("xray", "muon", "pedestal"):
        ea, eb = a.generate(kind, 2.0), b.generate(kind, 2.0)
        assert np.array_equal(ea.raw, eb.raw) and ea.truth == eb.truth
    c = model("default", mapping, seed=4)
    assert not np.array_equal(a.pedestal, c.pedestal)


def test_pedestal_event_truth_and_unknown_kind(mapping) -> None:
    m = model("default", mapping)
    t = m.generate("pedestal", 3.0).truth
    assert t["kind"] == "pedestal" and t["energy_kev"] == 0 and t["strips_x"] == []
    with pytest.raises(ValueError, match="unknown event kind"):
        m.generate("neutrino", 0.0)


def test_negative_polarity_goes_down(mapping) -> None:
    m = model(
        "default", mapping, seed=19, detector={"polarity": 0}, noise={"pedestal_mean": 3800.0}
    )
    e = m.generate("xray", 1.0)
    s = e.truth["strips_x"][int(np.argmax(e.truth["amplitude_x"]))]
    c, k = channel(mapping, s)
    assert float(e.raw[c, k, peak_bin(m, e.truth)]) < m.pedestal[c, k] - 100


def test_configure_follows_the_sca_clock(mapping) -> None:
    m = model("default", mapping, seed=20)
    m.configure(wckdiv=8, peaking_time_code=2)
    assert m.bin_ns == 80.0 and m.peaking_ns == pytest.approx(232.3)
    e = m.generate("xray", 1.0)
    drift_bins = e.truth["drift_time_us"] * 1000.0 / 80.0
    assert e.truth["arrival_bin"] == pytest.approx(200 + drift_bins)
    with pytest.raises(ValueError):
        m.configure(wckdiv=0)


def test_fpn_channels_carry_no_signal(mapping) -> None:
    m = model("default", mapping, seed=21, noise={"common_mode_sigma": 0.0})
    e = m.generate("muon", 1.0)
    excess = e.raw[:, 64:68].astype(float) - m.pedestal[:, 64:68, None]
    assert np.abs(excess).max() < 8 * float(m.noise[:, 64:68].max()) + 1


def test_noise_params_default_is_used_by_model(mapping) -> None:
    assert model("default", mapping).scenario.noise == NoiseParams()
