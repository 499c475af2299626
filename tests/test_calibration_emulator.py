"""55Fe calibration accuracy against the BEC emulator's truth (docs/CALIBRATION.md, "Against the
emulator"). Events go through the real chain in process (tests/emulated_fe55.py): emulator
physics -> card discriminators, pedestal equalisation and zero suppression -> protocol encoder ->
stream decoder -> event builder -> online processing -> calibration. The full sweep with more
points and repetitions is tools/calibration_accuracy.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from emulated_fe55 import gain_map_check, gain_sweep, muon_rejection

pytestmark = pytest.mark.slow

GAINS = (1.0, 0.8, 0.6, 0.2)  # 100 % -> 20 %, the first point is the reference
LOW = 0.2


@pytest.fixture(scope="module")
def sweep() -> list[dict]:
    return gain_sweep(GAINS, n_xrays=1000, seed=11, threshold_adc=200.0)


def _good(sweep: list[dict]) -> list[dict]:
    """The points where the targets hold with the shipped run script (60 % gain and up; the
    full sweep in docs/CALIBRATION.md shows where and why they stop holding)."""
    return [p for p in sweep if p["gain_true"] > 0.55]


def _rms(values) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def test_every_slice_is_fitted_at_its_gain(sweep) -> None:
    assert [p["ok"] for p in sweep] == [True] * len(GAINS), [p["reason"] for p in sweep]
    assert [round(p["gain_true"], 2) for p in sweep] == list(GAINS)


def test_gain_follows_the_truth_within_1_percent_rms(sweep) -> None:
    dev = [p["gain_fit"] / p["gain_true"] - 1.0 for p in _good(sweep)[1:]]  # [0]: reference
    assert len(dev) == 2 and _rms(dev) < 0.01, dev


def test_resolution_matches_the_configured_one_within_5_percent(sweep) -> None:
    rel = [p["fwhm_fit"] / p["fwhm_true"] - 1.0 for p in _good(sweep)]
    assert _rms(rel) < 0.05, rel


def test_threshold_in_kev_within_0_1_kev(sweep) -> None:
    for p in _good(sweep):
        assert abs(p["thr_adc_kev"] - p["thr_true_kev"]) < 0.1, p


@pytest.mark.xfail(
    strict=True,
    reason="at 20 % gain the energy sum misses ~3 % of the charge (strips under the AGET "
    "discriminator): gain ~2 % low, FWHM/E ~6 % high with the gamma line model; "
    "docs/CALIBRATION.md",
)
def test_targets_at_20_percent_gain(sweep) -> None:
    p = sweep[-1]
    assert abs(p["gain_fit"] / p["gain_true"] - 1.0) < 0.01
    assert abs(p["fwhm_fit"] / p["fwhm_true"] - 1.0) < 0.05


def test_low_gain_bias_is_an_energy_scale_bias(sweep) -> None:
    """What breaks the 20 % point is the energy scale (fit gain / emulator ADC per keV): with
    the gamma line model only the energy-sum loss is left, a low gain of 1-4 % (more than the
    target), and the scale explains it."""
    p, ref = sweep[-1], sweep[0]
    bias = p["gain_fit"] / p["gain_true"] - 1.0
    assert -0.04 < bias < -0.01, bias
    assert bias < -p["gain_err"] / p["gain_true"]
    assert bias == pytest.approx(p["scale"] / ref["scale"] - 1.0, abs=0.003)


def test_xray_selection_keeps_the_5_9_kev_photons(sweep) -> None:
    kept = np.array([p["ka_kept"] for p in sweep])
    assert np.all(kept >= 0.95), kept


def test_xray_selection_rejects_muons() -> None:
    assert muon_rejection((1.0, LOW), n_muons=200, seed=12) >= 0.95


def test_gain_map_finds_the_region_with_10_percent_less_gain() -> None:
    fitted, truth = gain_map_check(4500, seed=13, spot_mm=(15.0, -15.0, 15.0))
    seen = np.isfinite(fitted)
    assert seen.sum() >= 6 and seen[1, 4], "the low-gain cell (ix 4, iy 1) and its neighbours"
    assert fitted[1, 4] == pytest.approx(0.9, abs=0.02)
    assert np.all(np.abs(fitted[seen] - truth[seen]) < 0.02), fitted
