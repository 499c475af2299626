"""Reports a physicist can trust: the gain map does not read charge lost on bad strips as gain
and says why a cell has no gain (never "nan ADC"), the trend plots mark the reference, the
flagged and the failed slices with their reasons against UTC dates, both threshold estimates are
explained, and every figure renders to a PNG (matplotlib, the ``plots`` extra)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_calibration_fit import GAIN0, THR_ADC, fe55_adc
from test_calibration_gainmap import GAIN, map_events
from test_calibration_trend import xray_events

from agetdaq.readout.analysis.calibration import GainMap, GainMapConfig, GainTrend, TrendConfig
from agetdaq.readout.analysis.calibration import plots as calib_plots
from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.fit import fit_spectrum
from agetdaq.readout.analysis.calibration.report import (
    gain_trend_plot,
    gainmap_csv_rows,
    gainmap_plot,
    gainmap_to_dict,
    render_png,
    resolution_trend_plot,
    spectrum_plot,
    threshold_trend_plot,
)
from agetdaq.readout.analysis.calibration.spectrum import Spectrum

DEAD = (47, 125)  # X47 (x = -6.25 mm) and Y5 (y = -27.25 mm) in the default mapping
UNIX = 1.78e9


def lose_charge(events: dict, bad: BadStrips) -> dict:
    """What the readout does next to a bad strip (emulator, 0.5 mm pitch): the energy sum of a
    cloud centred d mm away reads 0.82 (d < 0.5), 0.9 (< 0.75), 0.95 (< 1), 0.985 (< 1.25)."""
    dx, dy = bad.distances(events["x_mm"], events["y_mm"])
    d = np.minimum(dx, dy)
    factor = np.select([d < 0.5, d < 0.75, d < 1.0, d < 1.25], [0.82, 0.9, 0.95, 0.985], 1.0)
    return dict(events, energy_adc=events["energy_adc"] * factor)


def test_bad_strips_from_the_pedestal_table() -> None:
    bad = BadStrips.from_strips(DEAD)
    assert bad.names == ("X47", "Y5") and bad.x_mm == (-6.25,) and bad.y_mm == (-27.25,)
    rows = np.zeros(3, [("strip", "<i2"), ("flags", "u1")])
    rows["strip"], rows["flags"] = (47, 125, -1), (1, 2, 1)  # the FPN row (-1) is no strip
    assert BadStrips.from_pedestal_rows(rows) == bad
    dx, dy = bad.distances(np.array([-6.0, 10.0, np.nan]), np.array([0.0, -27.0, 0.0]))
    assert dx[:2] == pytest.approx([0.25, 16.25]) and math.isnan(dx[2])
    assert dy[1] == pytest.approx(0.25)
    assert bad.near(np.array([-7.0, -7.5]), np.array([0.0, 0.0]), 1.0).tolist() == [True, False]
    assert bad.crossing((-10.0, 0.0), (0.0, 10.0)) == ["X47"]
    both = BadStrips.union([bad, BadStrips.from_strips((3, 47))])
    assert both.names == ("X3", "X47", "Y5")
    assert not BadStrips() and BadStrips().near(np.zeros(2), np.zeros(2), 1.0).tolist() == [0, 0]
    with pytest.raises(ValueError, match="strip numbers"):
        BadStrips.from_strips((240,))


def test_charge_lost_next_to_bad_strips_does_not_read_as_gain() -> None:
    """Issue 15: up to 8 % deficits next to dead strips. Without the list, the cells the bad
    strips cross read low; with it, X-rays within 1 mm are left out and every cell is within
    its statistics (a flat truth)."""
    rng = np.random.default_rng(71)
    bad = BadStrips.from_strips(DEAD)
    events = lose_charge(map_events(rng, np.ones((6, 6)), 700), bad)
    crossed = np.zeros((6, 6), bool)
    crossed[:, 2] = True  # X47 runs through column 2
    crossed[0, :] = True  # Y5 through row 0
    before = GainMap(GainMapConfig(select=False))
    before.fill(events)
    rel = before.fit().rel_gain
    assert np.mean(rel[crossed]) < 0.985 and np.min(rel[crossed]) < 0.98
    after = GainMap(GainMapConfig(select=False), bad)
    after.fill(events)
    result = after.fit()
    assert np.all(np.abs(result.rel_gain - 1.0) < 0.02), result.rel_gain
    assert abs(np.mean(result.rel_gain[crossed]) - 1.0) < 0.005
    excluded = result.map_of("excluded")
    assert np.all(excluded[crossed] > 0) and np.all(excluded[~crossed] == 0)
    region = result.regions[2]  # (ix 2, iy 0): both strips cross it
    assert region.bad_strips == ("X47", "Y5") and "left out" in region.note
    plot = gainmap_plot(result)
    assert sorted(plot.hatched) == sorted((ix, iy) for iy, ix in zip(*np.nonzero(crossed)))
    assert "X47, Y5" in plot.footer[-1]
    d = gainmap_to_dict(result)
    assert d["bad_strips"]["names"] == ["X47", "Y5"] and d["bad_strip_margin_mm"] == 1.0
    rows = gainmap_csv_rows(result)
    assert rows[3][rows[0].index("bad_strips")] == "X47 Y5"


def test_a_map_whose_cells_all_fail_says_why_and_never_nan() -> None:
    rng = np.random.default_rng(72)
    gm = GainMap(GainMapConfig(select=False), BadStrips.from_strips(DEAD))
    gm.fill(lose_charge(map_events(rng, np.ones((6, 6)), 30), gm.bad_strips))
    result = gm.fit()
    assert not any(r.ok for r in result.regions)
    plot = gainmap_plot(result)
    text = "\n".join([*plot.notes, *plot.footer, *(t for row in plot.cell_text for t in row)])
    assert "nan" not in text.lower() and "no reference: no cell could be fitted" in plot.notes
    assert all(t.startswith("no gain:\n") and "X-rays" in t for row in plot.cell_text for t in row)
    assert "too few counts" in text and "left out" in text
    assert gainmap_to_dict(result)["reference_reason"] == "no cell could be fitted"


def _trend() -> GainTrend:
    """A reference slice, a good one, a slice with a gain step and a failed one, on unix time."""
    rng = np.random.default_rng(73)
    trend = GainTrend(TrendConfig(slice_xrays=1000, threshold_adc=THR_ADC))
    trend.feed(xray_events(fe55_adc(rng, 1000, GAIN0, 0.18), UNIX))
    trend.feed(xray_events(fe55_adc(rng, 1000, 0.8 * GAIN0, 0.22), UNIX + 3600))
    step = np.concatenate([fe55_adc(rng, 500, 0.7 * GAIN0, 0.25), fe55_adc(rng, 500, 0.5 *
                                                                          GAIN0, 0.3)])  # fmt: skip
    trend.feed(xray_events(step, UNIX + 7200))
    trend.feed(xray_events(fe55_adc(rng, 50, 0.5 * GAIN0, 0.3), UNIX + 9000))
    trend.close()
    return trend


def test_trend_plots_mark_reference_flagged_and_failed_slices_against_dates() -> None:
    trend = _trend()
    assert [p.status for p in trend.points] == ["ok", "ok", "split", "failed"]
    gain = gain_trend_plot(trend.points)
    names = {s.name: s for s in gain.series}
    assert gain.x_time and gain.x_label == "time (UTC)"
    assert names["gain / reference: reference slice"].x.tolist() == [UNIX + 49.95]
    assert names["gain / reference: flagged (see below)"].y.size == 2  # the step's two parts
    assert names["failed slice (reason below)"].style == "rug"
    footer = "\n".join(gain.footer)
    assert "too few counts (50 < 100)" in footer and "inside the slice" in footer
    assert any("reference: slice 0" in n for n in gain.notes)
    res = resolution_trend_plot(trend.points)
    assert [s.name for s in res.series][-1].startswith("intrinsic")
    assert "intrinsic = fitted with the gain spread" in res.footer[-1]
    thr = threshold_trend_plot(trend.points, THR_ADC)
    assert thr.series[0].name == "DAQ threshold / gain" and thr.series[0].y.size == 4
    assert thr.footer[0].startswith("DAQ threshold / gain:") and "turn-on" in thr.footer[1]
    assert "unknown" in threshold_trend_plot(trend.points, None).notes[0]


def test_every_figure_renders_to_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    trend = _trend()
    rng = np.random.default_rng(74)
    spectrum = Spectrum.from_values(fe55_adc(rng, 3000, GAIN, 0.2))
    gm = GainMap(GainMapConfig(select=False, nx=2, ny=2), BadStrips.from_strips(DEAD))
    gm.fill(map_events(rng, np.ones((6, 6)), 60))
    figures = {
        "spectrum": spectrum_plot(spectrum, fit_spectrum(spectrum), "s", THR_ADC),
        "failed_spectrum": spectrum_plot(Spectrum(), fit_spectrum(Spectrum())),
        "gain": gain_trend_plot(trend.points),
        "resolution": resolution_trend_plot(trend.points),
        "threshold": threshold_trend_plot(trend.points, THR_ADC),
        "map": gainmap_plot(gm.fit()),
    }
    for name, plot in figures.items():
        path = render_png(plot, tmp_path / f"{name}.png", calib_plots.render)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
