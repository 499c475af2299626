"""55Fe calibration accuracy against the BEC emulator's truth (docs/CALIBRATION.md, "Against the
emulator"). Events go through the real chain in process (tests/emulated_fe55.py): emulator
physics -> card discriminators, pedestal equalisation and zero suppression -> protocol encoder ->
stream decoder -> event builder -> online processing -> calibration. The card runs the shipped
calibration run script (readout/scripts/calibration.txt: every channel read whole, no zero
suppression). The full sweep with more points and repetitions is tools/calibration_accuracy.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from emulated_fe55 import (
    EmulatedDaq,
    gain_map_check,
    gain_sweep,
    kalpha_charge_loss,
    muon_rejection,
)

pytestmark = pytest.mark.slow

GAINS = (1.0, 0.8, 0.6, 0.2)  # 100 % -> 20 %, the first point is the reference
LOW = 0.2


@pytest.fixture(scope="module")
def sweep() -> list[dict]:
    return gain_sweep(GAINS, n_xrays=1000, seed=11, threshold_adc=200.0)


def _rms(values) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def test_every_slice_is_fitted_at_its_gain(sweep) -> None:
    assert [p["ok"] for p in sweep] == [True] * len(GAINS), [p["reason"] for p in sweep]
    assert [round(p["gain_true"], 2) for p in sweep] == list(GAINS)


def test_gain_follows_the_truth_within_1_percent_rms(sweep) -> None:
    dev = [p["gain_fit"] / p["gain_true"] - 1.0 for p in sweep[1:]]  # [0]: the reference
    assert len(dev) == 3 and _rms(dev) < 0.01, dev


def test_resolution_matches_the_configured_one_within_5_percent(sweep) -> None:
    rel = [p["fwhm_fit"] / p["fwhm_true"] - 1.0 for p in sweep]
    assert _rms(rel) < 0.05, rel


def test_threshold_in_kev_within_0_1_kev(sweep) -> None:
    for p in sweep:
        assert abs(p["thr_adc_kev"] - p["thr_true_kev"]) < 0.1, p


def test_targets_at_20_percent_gain(sweep) -> None:
    """The point that failed with the physics run script (energy sum ~3 % short) and with an
    unconstrained escape (K-alpha not significant): gain and FWHM/E on target, and the gain
    within 2.5 times its quoted error."""
    p = sweep[-1]
    dev = p["gain_fit"] / p["gain_true"] - 1.0
    assert abs(dev) < 0.01 and abs(dev) < 2.5 * p["gain_err"] / p["gain_true"], p
    assert abs(p["fwhm_fit"] / p["fwhm_true"] - 1.0) < 0.05, p


def test_energy_scale_stays_flat_down_to_20_percent_gain(sweep) -> None:
    """Fitted ADC per keV over the emulator's: what broke the low-gain points before was this
    scale falling with the gain (0.97 at 20 %, a constant charge loss per event); with every
    channel read whole it stays within 1 % of the reference's."""
    ref = sweep[0]["scale"]
    scales = [p["scale"] / ref for p in sweep]
    assert np.all(np.abs(np.array(scales) - 1.0) < 0.01), scales


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


def test_calibration_script_keeps_the_charge_the_physics_script_loses() -> None:
    """At 20 % gain run.txt (hit channels, card zero suppression) loses ~25 ADC of a ~600 ADC
    K-alpha sum; calibration.txt (every channel read whole) keeps it to a few ADC."""
    physics, calib = (
        kalpha_charge_loss(EmulatedDaq("gain-drift", seed=21, script=script), LOW, 300)[1]
        for script in ("run", "calibration")
    )
    assert 15.0 < physics < 35.0 and abs(calib) < 6.0, (physics, calib)
