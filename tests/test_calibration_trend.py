"""Gain / resolution / threshold trend: slicing of event batches, reference, accuracy on the
CAST-like drift, the X-ray selection and the trend reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_calibration_fit import GAIN0, THR_ADC, fe55_adc, scenario

from agetdaq.readout.analysis.calibration.report import (
    trend_csv_rows,
    trend_plot,
    trend_to_dicts,
    write_csv,
)
from agetdaq.readout.analysis.calibration.selection import (
    XraySelection,
    column,
    cut_flow,
    select_xrays,
)
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.trend import GainTrend, TrendConfig


def xray_events(adc: np.ndarray, t0: float = 0.0, rate_hz: float = 10.0) -> dict:
    n = adc.size
    return {
        "energy_adc": adc,
        "n_clusters_x": np.ones(n, dtype=np.int16),
        "n_clusters_y": np.ones(n, dtype=np.int16),
        "size_x": np.full(n, 4, dtype=np.int16),
        "size_y": np.full(n, 4, dtype=np.int16),
        "balance": np.full(n, 0.05, dtype=np.float32),
        "x_mm": np.zeros(n),
        "y_mm": np.zeros(n),
        "time_s": t0 + np.arange(n) / rate_hz,
    }


def feed_in_batches(trend: GainTrend, events: dict, rng: np.random.Generator) -> list:
    n = len(events["energy_adc"])
    cuts = np.sort(rng.integers(0, n, 7))
    points = []
    for idx in np.split(np.arange(n), cuts):
        points += trend.feed({k: v[idx] for k, v in events.items()})
    return points


def test_drift_scenario_trend_meets_the_targets():
    """9 slices of 1 000 X-rays from 100 % to 20 % gain fed in ragged batches."""
    rng = np.random.default_rng(21)
    trend = GainTrend(TrendConfig(slice_xrays=1000, threshold_adc=THR_ADC))
    t = 0.0
    for frac, res in scenario():
        feed_in_batches(trend, xray_events(fe55_adc(rng, 1000, GAIN0 * frac, res), t), rng)
        t += 100.0
    assert trend.open_counts == (0, 0)
    pts = trend.points
    assert len(pts) == 9 and all(p.ok for p in pts), [p.reason for p in pts]
    truth = np.array(scenario())
    a = trend.arrays()
    assert np.all(a["n_xrays"] == 1000)
    assert trend.reference_gain == pytest.approx(pts[0].gain)
    gain_true = GAIN0 * truth[:, 0]
    assert np.sqrt(np.mean((a["gain"] / gain_true - 1) ** 2)) < 0.01
    # relative gain: reference is the first slice, so its own error enters every point
    assert np.max(np.abs(a["gain_rel"] / truth[:, 0] - 1)) < 0.03
    assert np.sqrt(np.mean((a["resolution"] / truth[:, 1] - 1) ** 2)) < 0.05
    thr_true = THR_ADC / gain_true
    assert np.max(np.abs(a["threshold_kev_adc"] - thr_true)) < 0.1
    assert np.sqrt(np.mean((a["threshold_kev_spectrum"] - thr_true) ** 2)) < 0.1
    assert a["threshold_kev_adc"][-1] == pytest.approx(2.0, abs=0.1)  # CAST: ~2 keV at 20 %
    assert np.all(np.diff(a["t_start_s"]) == 100.0)


def test_count_slices_across_ragged_batches_keep_every_event():
    rng = np.random.default_rng(22)
    events = xray_events(fe55_adc(rng, 2500, 200.0, 0.2))
    events["n_clusters_x"][::10] = 2  # every 10th event is not X-ray-like
    trend = GainTrend(TrendConfig(slice_xrays=700))
    points = feed_in_batches(trend, events, rng)
    assert [p.n_xrays for p in points] == [700, 700, 700]
    n_sel = int(select_xrays(events).sum())
    assert n_sel == 2250
    assert sum(p.n_events for p in points) + trend.open_counts[0] == 2500
    assert trend.open_counts[1] == n_sel - 2100 == trend.spectrum.total
    assert points[1].t_start_s == pytest.approx(points[0].t_stop_s + 0.1)
    last = trend.close()
    assert last.n_xrays == 150 and last.ok and trend.open_counts == (0, 0)


def test_time_slices():
    rng = np.random.default_rng(23)
    events = xray_events(fe55_adc(rng, 2000, 200.0, 0.2), rate_hz=10.0)  # 200 s of data
    trend = GainTrend(TrendConfig(slice_xrays=10**6, slice_minutes=1.0))
    points = feed_in_batches(trend, events, rng)
    assert [p.n_events for p in points] == [600, 600, 600]
    assert all(p.t_stop_s - p.t_start_s == pytest.approx(59.9) for p in points)
    assert all(p.ok for p in points)
    # a gap longer than a slice closes the open slice before the late event
    late = xray_events(fe55_adc(rng, 10, 200.0, 0.2), t0=1000.0)
    gap = trend.feed(late)
    assert len(gap) == 1 and gap[0].n_events == 200 and trend.open_counts == (10, 10)


def test_failed_slice_is_a_point_with_a_reason():
    trend = GainTrend(TrendConfig(reference_gain=100.0))
    rng = np.random.default_rng(24)
    trend.feed(xray_events(fe55_adc(rng, 30, 200.0, 0.2)))
    p = trend.close()
    assert not p.ok and "too few counts" in p.reason
    assert math.isnan(p.gain) and math.isnan(p.gain_rel) and math.isnan(p.resolution)
    assert trend.reference_gain == 100.0
    assert trend.close().reason == "empty spectrum"


def test_reference_gain_given_or_from_a_reference_run():
    rng = np.random.default_rng(25)
    cfg = TrendConfig(slice_xrays=1000, reference_gain=250.0)
    trend = GainTrend(cfg)
    (p,) = trend.feed(xray_events(fe55_adc(rng, 1000, 200.0, 0.2)))
    assert p.gain_rel == pytest.approx(p.gain / 250.0)
    assert p.gain_rel_err == pytest.approx(p.gain_err / 250.0)
    ref_fit = trend.set_reference_from_spectrum(Spectrum.from_values(fe55_adc(rng, 3000, 180, 0.2)))
    assert trend.reference_gain == pytest.approx(ref_fit.gain) and abs(ref_fit.gain - 180) < 3
    (q,) = trend.feed(xray_events(fe55_adc(rng, 1000, 200.0, 0.2)))
    assert q.gain_rel == pytest.approx(q.gain / ref_fit.gain)
    with pytest.raises(ValueError, match="reference spectrum fit failed"):
        trend.set_reference_from_spectrum(Spectrum())
    with pytest.raises(ValueError):
        trend.set_reference(0.0)


def test_first_good_slice_becomes_the_reference():
    rng = np.random.default_rng(26)
    trend = GainTrend(TrendConfig(slice_xrays=1000, slice_minutes=5.0))
    trend.feed(xray_events(fe55_adc(rng, 50, 200.0, 0.2)))  # 5 s, then a gap
    bad = trend.feed(xray_events(fe55_adc(rng, 999, 200.0, 0.2), t0=400.0))
    assert len(bad) == 1 and not bad[0].ok and trend.reference_gain is None
    good = trend.close()
    assert good.ok and trend.reference_gain == good.gain and good.gain_rel == 1.0


def test_bad_input_raises_clear_errors():
    trend = GainTrend(TrendConfig(slice_minutes=5.0, select=False))
    with pytest.raises(ValueError, match="time_s"):
        trend.feed({"energy_adc": np.ones(5)})
    with pytest.raises(ValueError, match="energy_adc"):
        GainTrend().feed({"adc": np.ones(5)})
    with pytest.raises(ValueError, match="differ in length"):
        GainTrend().feed({"energy_adc": np.ones(5), "time_s": np.ones(4)})
    with pytest.raises(ValueError):
        TrendConfig(slice_xrays=0)
    assert GainTrend().feed({"energy_adc": np.zeros(0)}) == []


def test_selection_cuts_and_aliases():
    n = 8
    ev = np.zeros(
        n,
        dtype=[
            ("energy", "f4"),
            ("ncl_x", "i2"),
            ("ncl_y", "i2"),
            ("size_x", "i2"),
            ("size_y", "i2"),
            ("balance", "f4"),
            ("x_mm", "f4"),
            ("y_mm", "f4"),
        ],
    )  # agetdaq.readout.datapath.processing.features names
    ev["energy"] = 1000
    ev["ncl_x"] = ev["ncl_y"] = 1
    ev["size_x"] = ev["size_y"] = 4
    ev["ncl_y"][1] = 2
    ev["size_x"][2] = 1
    ev["size_y"][3] = 9
    ev["balance"][4] = 0.3
    ev["balance"][5] = np.nan
    ev["x_mm"][6] = 29.0
    ev["energy"][7] = 10
    sel = XraySelection(energy_min_adc=50, fiducial_radius_mm=25.0)
    assert select_xrays(ev, sel).tolist() == [True] + [False] * 7
    flow = cut_flow(ev, sel)
    assert flow == {
        "all": 8,
        "energy": 7,
        "one_cluster": 6,
        "size": 4,
        "balance": 2,
        "fiducial": 1,
    }
    assert select_xrays(ev, XraySelection(single_cluster=False, size_max=0, max_balance=math.inf))[
        1:5
    ].all()
    assert column(ev, "energy_adc")[0] == 1000
    with pytest.raises(ValueError, match="n_clusters_x"):
        select_xrays({"energy_adc": np.ones(2)})
    assert XraySelection.from_toml("[calibration.selection]\nsize_max = 6\n").size_max == 6


def test_trend_reports():
    rng = np.random.default_rng(27)
    trend = GainTrend(TrendConfig(slice_xrays=1000, threshold_adc=THR_ADC))
    trend.feed(xray_events(fe55_adc(rng, 2000, 200.0, 0.2)))
    trend.feed(xray_events(fe55_adc(rng, 40, 200.0, 0.2)))
    trend.close()
    dicts = trend_to_dicts(trend.points)
    json.dumps(dicts, allow_nan=False)
    assert [d["ok"] for d in dicts] == [True, True, False] and dicts[2]["gain"] is None
    rows = trend_csv_rows(trend.points)
    assert rows[0][0] == "index" and "gain_rel" in rows[0] and len(rows) == 4
    assert rows[3][rows[0].index("gain")] == ""
    plot = trend_plot(trend.points, "resolution")
    by_name = {s.name: s for s in plot.series}
    assert by_name["resolution"].y.size == 1 and by_name["resolution"].yerr is not None
    assert by_name["resolution: reference slice"].y.size == 1  # the first slice, a star
    failed = by_name["failed slice (reason below)"]
    assert failed.x.size == 1 and failed.style == "rug"
    assert "too few counts" in "\n".join(plot.footer)  # the failed slice's reason is shown
    assert plot.x_label == "time (s)"  # event times below 1e8 s are not unix dates


def test_write_csv(tmp_path):
    rng = np.random.default_rng(28)
    trend = GainTrend(TrendConfig(slice_xrays=1000))
    trend.feed(xray_events(fe55_adc(rng, 1000, 200.0, 0.2)))
    path = write_csv(trend_csv_rows(trend.points), tmp_path / "trend.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("index,t_start_s")


def test_toml_config():
    text = """
[calibration.trend]
slice_xrays = 500
slice_minutes = 30.0
threshold_adc = 120.0
[calibration.fit]
gas = "Xe"
[calibration.selection]
max_balance = 0.2
"""
    cfg = TrendConfig.from_toml(text)
    assert (cfg.slice_xrays, cfg.slice_minutes, cfg.threshold_adc) == (500, 30.0, 120.0)
    assert cfg.fit.gas == "Xe" and cfg.selection.max_balance == 0.2
    with pytest.raises(ValueError, match="unknown key"):
        TrendConfig.from_toml("[calibration.trend]\nslices = 3\n")
