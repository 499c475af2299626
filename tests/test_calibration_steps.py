"""A slice that is not one line is never a good point: the rank test for a gain change inside a
slice (and its plain-Python twin), the split at the change, the one-line symptoms (escape ratio,
chi2, double peak), the refusal of a double line that does not move in time, and the error of
the relative gain with the reference's own error (pulls). Synthetic spectra
(test_calibration_fit.fe55_adc); the emulator's are in test_calibration_emulator_steps.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_calibration_fit import GAIN0, THR_ADC, fe55_adc
from test_calibration_trend import xray_events

from agetdaq.readout.analysis.calibration import (
    GainTrend,
    LineCheckConfig,
    SliceJudge,
    SliceXrays,
    TrendConfig,
    expand,
)
from agetdaq.readout.analysis.calibration.fit import fit_spectrum
from agetdaq.readout.analysis.calibration.linecheck import symptoms
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.stationarity import (
    change_point,
    change_point_reference,
)

FAST = LineCheckConfig(double_peak=False)  # the two-line fit costs ~30 ms a slice


def slice_of(energy: np.ndarray, events_per_xray: int = 1) -> SliceXrays:
    n = energy.size
    ordinal = np.arange(n) * events_per_xray
    return SliceXrays(energy, ordinal, ordinal * 0.01, n * events_per_xray, (0.0, n * 0.01))


def stepped(rng, n: int, at: int, g1: float, g2: float, res: float = 0.18) -> np.ndarray:
    return np.concatenate([fe55_adc(rng, at, g1, res), fe55_adc(rng, n - at, g2, res)])


def test_rank_test_matches_its_pairwise_twin() -> None:
    rng = np.random.default_rng(51)
    for shift in (0.0, 0.3, 1.0):
        x = np.concatenate([rng.normal(0, 1, 35), rng.normal(shift, 1, 25)])
        x[7] = np.nan  # dropped by both
        cp = change_point(x)
        p, at = change_point_reference(x)
        assert cp.p_value == pytest.approx(p, rel=1e-9) and cp.index == at + (at >= 7)
    assert change_point(np.ones(5)).p_value == 1.0  # too few values: no test


def test_rank_test_p_value_is_uniform_when_nothing_changes() -> None:
    rng = np.random.default_rng(52)
    p = np.array([change_point(fe55_adc(rng, 300, GAIN0, 0.3)).p_value for _ in range(400)])
    assert 0.02 < np.mean(p < 0.05) < 0.09  # exact for large n: 5 %
    assert np.mean(p < 1e-3) <= 0.005


def test_gain_step_inside_a_slice_is_split_at_the_step() -> None:
    """Issue 15: a slice with a +23 % step was fitted on one of its two peaks and reported OK."""
    rng = np.random.default_rng(53)
    energy = stepped(rng, 1000, 600, GAIN0, 0.77 * GAIN0)
    point = SliceJudge(threshold_adc=THR_ADC).judge(slice_of(energy, 3), 4)
    assert point.status == "split" and not point.ok and math.isnan(point.gain)
    assert point.change_p < 1e-20 and point.change_rel == pytest.approx(-0.23, abs=0.02)
    assert "inside the slice" in point.reason
    first, guard, second = point.parts  # the X-rays around the cut are left out
    assert [q.status for q in point.parts] == ["flagged", "failed", "flagged"]
    assert "its place is uncertain to +- " in guard.reason and 0 < guard.n_xrays <= 40
    assert abs(first.n_xrays + guard.n_xrays / 2 - 600) <= 25
    assert sum(q.n_xrays for q in point.parts) == 1000
    assert sum(q.n_events for q in point.parts) == 3000 and first.n_events == 3 * first.n_xrays
    assert first.gain == pytest.approx(GAIN0, rel=0.015)
    assert second.gain == pytest.approx(0.77 * GAIN0, rel=0.015)
    assert first.part == "1/3" and first.index == 4 and "part 1/3 of slice 4" in first.flag
    assert first.t_stop_s <= guard.t_start_s <= guard.t_stop_s <= second.t_start_s


def test_a_step_near_the_end_leaves_a_failed_short_part_and_a_good_one() -> None:
    rng = np.random.default_rng(54)
    point = SliceJudge().judge(slice_of(stepped(rng, 1000, 900, GAIN0, 1.25 * GAIN0)), 0)
    assert point.status == "split"
    good = [q for q in point.parts if q.good]
    failed = [q for q in point.parts if not q.good]
    assert len(good) == 1 and good[0].gain == pytest.approx(GAIN0, rel=0.015)
    assert "too few X-rays in this part" in failed[-1].reason


def test_a_halved_gain_whose_one_line_fit_fails_is_split_too() -> None:
    """At -50 % the whole slice's fit fails its quality checks; the rank test needs no fit."""
    rng = np.random.default_rng(55)
    point = SliceJudge().judge(slice_of(stepped(rng, 1000, 500, GAIN0, 0.5 * GAIN0, 0.3)), 0)
    good = [q for q in point.parts if q.good]
    assert point.status == "split" and len(good) == 2 and not point.parts[1].good
    assert good[1].gain / good[0].gain == pytest.approx(0.5, rel=0.02)


def test_clean_slices_are_good_points() -> None:
    rng = np.random.default_rng(56)
    judge = SliceJudge(threshold_adc=THR_ADC)
    statuses = [
        judge.judge(slice_of(fe55_adc(rng, 1000, GAIN0 * g, r)), 0).status
        for g, r in ((1.0, 0.12), (1.0, 0.18), (0.6, 0.3), (0.2, 0.5))
        for _ in range(5)
    ]
    assert statuses == ["ok"] * 20


def test_a_change_within_the_tolerance_keeps_a_flagged_good_point() -> None:
    """0.8 % inside 20 000 X-rays is significant but harmless: a good point, flagged, its
    spread removed from the intrinsic resolution."""
    rng = np.random.default_rng(57)
    point = SliceJudge(check=FAST).judge(slice_of(stepped(rng, 20000, 10000, GAIN0, 1.008 *
                                                          GAIN0)), 0)  # fmt: skip
    assert point.status == "flagged" and point.ok and "tolerance" in point.flag
    assert point.change_rel == pytest.approx(0.008, abs=0.003)
    assert 0.002 < point.drift_rms < 0.006
    assert point.resolution_intrinsic < point.resolution


def test_a_double_line_that_does_not_move_in_time_is_refused() -> None:
    """Two gains mixed all along (e.g. regions of different gain): no change in time, but the
    spectrum is not one line. Its halves by time agree, so it is refused, not split."""
    rng = np.random.default_rng(58)
    energy = np.concatenate(
        [fe55_adc(rng, 500, GAIN0, 0.18), fe55_adc(rng, 500, 0.8 * GAIN0, 0.18)]
    )
    rng.shuffle(energy)
    point = SliceJudge().judge(slice_of(energy), 0)
    assert point.status == "failed" and not point.parts
    assert "not one line: double peak" in point.reason and "halves by time agree" in point.reason


def test_a_second_line_at_half_the_gain_reads_as_an_escape_ratio_off_its_prior() -> None:
    """A fall to half the gain puts the new K-alpha where the escape peak was (issue 15:
    escape/K-alpha 0.48 against 0.13 +- 0.04)."""
    rng = np.random.default_rng(59)
    energy = np.concatenate([fe55_adc(rng, 700, GAIN0, 0.18), fe55_adc(rng, 300, GAIN0 / 2, 0.25)])
    fit = fit_spectrum(Spectrum.from_values(energy))
    found = symptoms(fit)
    assert any(s.startswith("escape/K-alpha ratio") for s in found), (fit.reason, found)
    assert symptoms(fit_spectrum(Spectrum.from_values(fe55_adc(rng, 1000, GAIN0, 0.18)))) == []


def test_a_trend_never_reports_a_stepped_slice_and_the_map_sees_its_parts() -> None:
    rng = np.random.default_rng(60)
    trend = GainTrend(TrendConfig(slice_xrays=1000, threshold_adc=THR_ADC, check=FAST))
    trend.feed(xray_events(fe55_adc(rng, 1000, GAIN0, 0.18)))
    (p,) = trend.feed(xray_events(stepped(rng, 1000, 400, 0.9 * GAIN0, 0.7 * GAIN0), t0=200))
    assert p.status == "split" and not p.ok and math.isnan(p.gain_rel)
    rel = [q.gain_rel for q in p.parts if q.good]
    assert rel == pytest.approx([0.9, 0.7], abs=0.02)
    rows = expand(trend.points)
    assert [q.status for q in rows] == ["ok", "flagged", "failed", "flagged"] and rows[0].reference
    a = trend.arrays(expanded=True)
    assert a["n_xrays"].tolist() == [1000, *(q.n_xrays for q in p.parts)]


def test_relative_gain_error_includes_the_reference_error() -> None:
    """Pulls of gain_rel against the truth over many repeats: width ~1 with the reference's
    error, too wide without it (issue 15: errors ~sqrt(2) too small)."""
    rng = np.random.default_rng(61)
    pulls, pulls_stat = [], []
    for _ in range(40):
        trend = GainTrend(TrendConfig(slice_xrays=1000, threshold_adc=THR_ADC, check=FAST))
        for frac, res in ((1.0, 0.3), (0.5, 0.3)):  # equal errors: sqrt(2) without the ref
            trend.feed(xray_events(fe55_adc(rng, 1000, GAIN0 * frac, res)))
        ref, p = trend.points
        assert ref.reference and ref.gain_rel_err == 0.0 and p.reference_gain == ref.gain
        expect = p.gain_rel * math.hypot(p.gain_err / p.gain, ref.gain_err / ref.gain)
        assert p.gain_rel_err == pytest.approx(expect)
        pulls.append((p.gain_rel - 0.5) / p.gain_rel_err)
        pulls_stat.append((p.gain_rel - 0.5) / p.gain_rel_err_stat)
    assert abs(np.mean(pulls)) < 0.45 and 0.7 < np.std(pulls) < 1.3
    assert np.std(pulls_stat) > 1.15 * np.std(pulls)


def test_reference_set_with_its_error_and_by_assignment() -> None:
    rng = np.random.default_rng(62)
    trend = GainTrend(TrendConfig(slice_xrays=1000, check=FAST))
    trend.set_reference(250.0, 2.5)
    (p,) = trend.feed(xray_events(fe55_adc(rng, 1000, 200.0, 0.2)))
    assert p.gain_rel_err == pytest.approx(p.gain_rel * math.hypot(p.gain_err / p.gain, 0.01))
    trend.reference_gain = 250.0  # what the GUI does: an exact reference
    (q,) = trend.feed(xray_events(fe55_adc(rng, 1000, 200.0, 0.2)))
    assert q.gain_rel_err == pytest.approx(q.gain_err / 250.0) and trend.reference_gain_err == 0
    with pytest.raises(ValueError):
        trend.set_reference(250.0, -1.0)
    assert (
        TrendConfig.from_toml("[calibration.linecheck]\nchange_p = 1e-4\n").check.change_p == 1e-4
    )
    with pytest.raises(ValueError, match="unknown key"):
        TrendConfig.from_toml("[calibration.linecheck]\nno_such = 1\n")


def test_a_bad_chi2_alone_keeps_a_flagged_point_with_scaled_errors() -> None:
    """Events that repeat (an emulator replaying its bank under load) make a spectrum that is
    not Poisson: chi2/ndf ~3, one line, halves alike. The gain is right, its error is not: a
    good point, flagged, errors times sqrt(chi2/ndf)."""
    rng = np.random.default_rng(63)
    energy = np.repeat(fe55_adc(rng, 250, GAIN0, 0.18), 4)
    rng.shuffle(energy)
    point = SliceJudge(check=FAST).judge(slice_of(energy), 0)
    plain = SliceJudge(check=FAST).fit_xrays(slice_of(energy), 0)
    assert point.status == "flagged" and point.ok and "sqrt(chi2/ndf)" in point.flag
    assert point.chi2_ndf > 1.6 and point.gain == pytest.approx(GAIN0, rel=0.02)
    assert point.gain_err == pytest.approx(plain.gain_err * math.sqrt(point.chi2_ndf))


def toggled(rng, n: int, steps: tuple[int, ...], low: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Energies and true gains of ``n`` X-rays whose gain toggles 1 <-> ``low`` at ``steps``."""
    gains = np.where(np.searchsorted(steps, np.arange(n), side="right") % 2 == 1, low, 1.0)
    energy = np.empty(n)
    for g in (1.0, low):
        energy[gains == g] = fe55_adc(rng, int(np.sum(gains == g)), GAIN0 * g, 0.18)
    return energy, gains


def good_parts(point, gains: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(true gains of its X-rays, fitted gain) of each good piece of a judged slice."""
    out, a = [], 0
    for q in point.parts if point.status == "split" else [point]:
        if q.good:
            out.append((gains[a : a + q.n_xrays], q.gain))
        a += q.n_xrays
    assert a == gains.size
    return out


def test_the_rank_test_sees_an_excursion_that_leaves_no_step() -> None:
    """Two steps close together in the middle (the gain leaves and comes back): the bridge goes
    down and up again, neither maximum of |U_t| is significant, its range is."""
    rng = np.random.default_rng(64)
    x = np.concatenate([rng.normal(0, 1, 1100), rng.normal(-1.5, 1, 80), rng.normal(0, 1, 1100)])
    cp = change_point(x)
    assert cp.p_value < 1e-3 and min(abs(cp.index - 1100), abs(cp.index - 1180)) <= 10, cp
    p, _ = change_point_reference(x[::4])  # the twin (O(n^2)) on a shorter series
    assert change_point(x[::4]).p_value == pytest.approx(p, rel=1e-9)
    ranks_clean = change_point(rng.normal(0, 1, 2280))
    assert ranks_clean.p_value > 1e-3


@pytest.mark.parametrize(
    "steps",
    [(1150, 1275), (2200, 2400), (60,), (2440,), (1250, 2450)],
    ids=[
        "excursion-middle",
        "two-steps-at-the-end",
        "first-seconds",
        "last-seconds",
        "middle-and-last-seconds",
    ],
)
def test_no_good_point_holds_a_step_wherever_it_is(steps) -> None:
    """A 30 s run (2 500 X-rays) with 20 % steps near its edges or close together: every good
    piece has the gain of its own X-rays (a part that still holds a step is split again or
    refused; the X-rays within the cut's uncertainty are left out)."""
    rng = np.random.default_rng([65, *steps])
    judge = SliceJudge(check=FAST)
    for _ in range(3):
        energy, gains = toggled(rng, 2500, steps)
        point = judge.judge(slice_of(energy), 0)
        assert point.status == "split", point.reason
        for own, gain in good_parts(point, gains):
            low = np.mean(own < 0.9)
            assert min(low, 1 - low) < 0.02, (own.size, low)  # a few stray X-rays at most
            assert gain / (GAIN0 * own.mean()) == pytest.approx(1.0, abs=0.015)


def test_the_cut_leaves_out_the_x_rays_it_cannot_place() -> None:
    """A step 200 X-rays into a slice: the rank test places it to within a few X-rays, and
    those (one side's gain inside the other's part: a 204-X-ray part once kept 11 and read
    1.5 % off) are a failed piece of their own."""
    rng = np.random.default_rng(66)
    kept_other = []
    for _ in range(6):
        energy, gains = toggled(rng, 2500, (200,))
        point = SliceJudge(check=FAST).judge(slice_of(energy), 0)
        guard = [q for q in point.parts if "its place is uncertain" in q.reason]
        assert len(guard) == 1 and 2 <= guard[0].n_xrays <= 40
        for own, _ in good_parts(point, gains):
            kept_other.append(min(np.sum(own < 0.9), np.sum(own >= 0.9)))
    assert sum(kept_other) <= 2, kept_other


def test_slow_drift_is_not_flagged_more_than_the_test_level() -> None:
    """Clean slices and a slow drift of 0.5 % across the slice: plain good points (the three
    maxima of the rank test share its 1e-3 level)."""
    rng = np.random.default_rng(67)
    judge = SliceJudge(check=FAST)
    statuses = []
    for drift in (0.0, 0.005):
        for _ in range(10):
            g = GAIN0 * (1 + drift * (np.arange(25) / 24 - 0.5))
            energy = np.concatenate([fe55_adc(rng, 100, gi, 0.18) for gi in g])
            statuses.append(judge.judge(slice_of(energy), 0).status)
    assert statuses == ["ok"] * 20


def test_pieces_at_the_ends_of_a_slice_may_be_empty() -> None:
    """A cut whose guard reaches the slice's end leaves an empty side: no X-ray, the events
    that follow the last X-ray, the slice's end time."""
    xr = slice_of(np.arange(30.0), 2)
    end, start = xr.take(30, 30), xr.take(0, 0)
    assert end.size == 0 and end.n_events == 0 and end.t_range == (0.3, 0.3)
    assert start.size == 0 and start.n_events == 0 and start.t_range == (0.0, 0.0)
    pieces = [xr.take(0, 0), xr.take(0, 12), xr.take(12, 30), xr.take(30, 30)]
    assert sum(p.n_events for p in pieces) == 60 and sum(p.size for p in pieces) == 30
