"""Gain map: region assignment, relative gains, per-region linear calibration, reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_calibration_fit import fe55_adc

from agetdaq.readout.analysis.calibration.gainmap import GainMap, GainMapConfig, region_index
from agetdaq.readout.analysis.calibration.report import (
    gainmap_csv_rows,
    gainmap_plot,
    gainmap_to_dict,
    render_png,
    write_csv,
)

GAIN = 200.0


def map_events(
    rng: np.random.Generator, rel: np.ndarray, per_region: int, offset_adc: float = 0.0
) -> dict:
    """Events spread uniformly over each 10 x 10 mm2 region of a 6 x 6 map with gain
    ``GAIN * rel[iy, ix]``."""
    parts = {"energy_adc": [], "x_mm": [], "y_mm": []}
    ny, nx = rel.shape
    for iy in range(ny):
        for ix in range(nx):
            adc = fe55_adc(rng, per_region, GAIN * rel[iy, ix], 0.2, offset_adc=offset_adc)
            parts["energy_adc"].append(adc)
            parts["x_mm"].append(rng.uniform(-30 + 10 * ix, -20 + 10 * ix, per_region))
            parts["y_mm"].append(rng.uniform(-30 + 10 * iy, -20 + 10 * iy, per_region))
    return {k: np.concatenate(v) for k, v in parts.items()}


@pytest.fixture(scope="module")
def drifted_map():
    rng = np.random.default_rng(31)
    truth = np.ones((6, 6))
    truth[2, 3] = 0.9  # the region with 10 % less gain
    truth[5, 0] = 1.05
    gm = GainMap(GainMapConfig(select=False))
    events = map_events(rng, truth, 1000)
    order = rng.permutation(events["energy_adc"].size)
    for idx in np.array_split(order, 5):
        gm.fill({k: v[idx] for k, v in events.items()})
    return truth, gm, gm.fit()


def test_region_with_less_gain_is_found(drifted_map):
    truth, gm, result = drifted_map
    assert all(r.ok for r in result.regions), [r.fit.reason for r in result.regions]
    rel = result.rel_gain
    assert abs(rel[2, 3] - 0.9) < 0.02
    assert abs(rel[5, 0] - 1.05) < 0.02
    assert np.max(np.abs(rel - truth)) < 0.02
    assert np.argmin(rel) == 2 * 6 + 3
    pulls = (rel - truth) / result.map_of("rel_gain_err")
    assert np.std(pulls) < 2.0
    assert sum(s.total for s in gm.spectra) == 36000 and gm.outside == 0


def test_linear_calibration_per_region(drifted_map):
    truth, _, result = drifted_map
    assert {r.calibration for r in result.regions} == {"linear"}
    slope = result.map_of("slope_adc_per_kev") / GAIN
    assert np.sqrt(np.mean((slope / truth - 1) ** 2)) < 0.03
    offsets = result.map_of("offset_adc")
    assert abs(np.mean(offsets)) < 3 * np.std(offsets) / 6 + 2.0  # unbiased, truth 0
    # the K-alpha position of every region maps to 5.9 keV
    ka = np.array([r.peak_adc for r in result.regions])
    x = np.array([-25.0 + 10 * (i % 6) for i in range(36)])
    y = np.array([-25.0 + 10 * (i // 6) for i in range(36)])
    assert np.allclose(result.to_kev(ka, x, y), 5.9, rtol=1e-9)
    assert math.isnan(result.to_kev(np.array([1000.0]), np.array([40.0]), np.array([0.0]))[0])


def test_offset_is_recovered_by_the_linear_calibration():
    rng = np.random.default_rng(32)
    gm = GainMap(GainMapConfig(nx=2, ny=1, select=False))
    events = map_events(rng, np.ones((1, 2)), 15000, offset_adc=60.0)
    events["x_mm"] = np.where(events["x_mm"] < -20, -15.0, 15.0)
    gm.fill(events)
    result = gm.fit()
    for r in result.regions:
        assert r.ok and r.calibration == "linear"
        assert abs(r.offset_adc - 60.0) < 3 * r.fit.errors["offset_adc"] + 5.0
        assert abs(r.slope_adc_per_kev / GAIN - 1) < 0.02


def test_region_index_edges_and_outside():
    cfg = GainMapConfig()
    x = np.array([-30.0, -29.99, 30.0, 29.99, -30.01, 0.0, np.nan, 5.0])
    y = np.array([-30.0, 0.0, 30.0, -30.0, 0.0, 30.01, 0.0, 5.0])
    assert region_index(cfg, x, y).tolist() == [0, 18, 35, 5, -1, -1, -1, 21]
    with pytest.raises(ValueError, match="x_range_mm"):
        GainMapConfig(x_range_mm=(10.0, -10.0))
    with pytest.raises(ValueError, match="reference"):
        GainMapConfig(reference="mean")


def test_sparse_region_fails_and_reference_choices():
    rng = np.random.default_rng(33)
    truth = np.ones((1, 3))
    events = map_events(rng, truth, 1500)
    keep = ~((events["x_mm"] > -10) & (rng.random(events["x_mm"].size) < 0.97))  # region 2: ~45
    events = {k: v[keep] for k, v in events.items()}
    base = {
        "nx": 3,
        "ny": 1,
        "x_range_mm": (-30.0, 0.0),
        "y_range_mm": (-30.0, -20.0),
        "select": False,
        "linear": False,
    }
    gm = GainMap(GainMapConfig(**base))
    gm.fill(events)
    result = gm.fit()
    sparse = result.regions[2]
    assert not sparse.ok and "too few counts" in sparse.fit.reason
    assert sparse.calibration == "none" and math.isnan(result.rel_gain[0, 2])
    assert {r.calibration for r in result.regions[:2]} == {"proportional"}
    assert np.allclose(result.rel_gain[0, :2], 1.0, atol=0.02)
    ref_peak = result.reference_peak_adc
    for reference in ("global", 2 * ref_peak):
        gm.config = GainMapConfig(**base, reference=reference)
        other = gm.fit()
        expected = ref_peak if reference == "global" else 2 * ref_peak
        assert other.reference_peak_adc == pytest.approx(expected, rel=0.01)
        assert other.global_fit is None or other.global_fit.ok


def test_selection_applies_before_mapping():
    rng = np.random.default_rng(34)
    events = map_events(rng, np.ones((1, 1)), 300)
    n = events["energy_adc"].size
    events |= {
        "n_clusters_x": np.where(np.arange(n) % 3 == 0, 2, 1),
        "n_clusters_y": np.ones(n, dtype=int),
        "size_x": np.full(n, 3),
        "size_y": np.full(n, 3),
        "balance": np.zeros(n),
    }
    gm = GainMap(GainMapConfig(nx=1, ny=1, x_range_mm=(-30, -20), y_range_mm=(-30, -20)))
    gm.fill(events)
    assert gm.spectra[0].total == n - len(range(0, n, 3))


def test_gainmap_reports_and_rendering(drifted_map, tmp_path):
    _, _, result = drifted_map
    d = gainmap_to_dict(result)
    json.dumps(d, allow_nan=False)
    assert len(d["regions"]) == 36 and d["rel_gain"][2][3] == pytest.approx(result.rel_gain[2, 3])
    rows = gainmap_csv_rows(result)
    assert len(rows) == 37 and rows[0][:3] == ["ix", "iy", "counts"]
    assert write_csv(rows, tmp_path / "map.csv").read_text().count("\n") == 37
    plot = gainmap_plot(result)
    assert plot.image.shape == (6, 6) and plot.extent == (-30.0, 30.0, -30.0, 30.0)

    seen = {}

    def renderer(p, path):
        seen["kind"] = p.kind
        path.write_bytes(b"\x89PNG fake")

    out = render_png(plot, tmp_path / "map.png", renderer)
    assert out.read_bytes().startswith(b"\x89PNG") and seen["kind"] == "gainmap"
    with pytest.raises(RuntimeError, match="wrote no file"):
        render_png(plot, tmp_path / "none.png", lambda p, path: None)
