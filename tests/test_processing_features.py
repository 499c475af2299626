"""Processing: event features, classification and trigger against their references, plus
hand-made cases; TOML configuration and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from test_processing import (
    N_S,
    RNG,
    layout_fixture,  # noqa: F401 (the "layout" fixture)
)

from agetdaq.readout.datapath.processing import reference as ref
from agetdaq.readout.datapath.processing.features import axis_order, compute_features
from agetdaq.readout.datapath.processing.trigger import (
    XRAY,
    SelectionConfig,
    TriggerConfig,
    classify,
    trigger,
)
from agetdaq.readout.datapath.processing.waveforms import StripLayout

# -- features, classification, trigger ------------------------------------------------------------


def test_features_hand_made(layout: StripLayout) -> None:
    amp = np.zeros((1, N_S), np.float32)
    hit = np.zeros((1, N_S), bool)
    for s, a in ((10, 10.0), (11, 20.0), (13, 10.0), (30, 5.0), (120 + 50, 40.0)):
        amp[0, s] = a
        hit[0, s] = True
    tb = np.full((1, N_S), 100, np.int16)
    tb[0, 30] = 130
    width = np.full((1, N_S), 9, np.int16)
    order = axis_order(layout.axis, layout.strip)
    f = compute_features(amp, tb, width, hit, order, layout.strip, layout.position_mm, 1)[0]
    assert (f["nx"], f["ny"], f["n_hits"], f["ncl_x"], f["ncl_y"]) == (4, 1, 5, 2, 1)
    assert f["size_x"] == 3  # 10, 11, 13 (gap of one strip bridged); 30 is its own cluster
    pos = layout.position_mm
    cx = (10 * pos[10] + 20 * pos[11] + 10 * pos[13]) / 40
    assert f["x_mm"] == pytest.approx(cx, abs=1e-5)
    assert f["y_mm"] == pytest.approx(pos[170])
    assert f["ex"] == 45 and f["ey"] == 40 and f["balance"] == pytest.approx(5 / 85)
    assert f["t_spread"] == 30 and f["width_max"] == 9 and f["amp_max"] == 40
    f0 = compute_features(amp, tb, width, hit, order, layout.strip, layout.position_mm, 0)[0]
    assert f0["ncl_x"] == 3 and f0["size_x"] == 2  # without gap bridging: {10,11} {13} {30}


def test_features_match_reference(layout: StripLayout) -> None:
    n = 40
    hit = RNG.random((n, N_S)) < 0.04
    hit[:5] = False
    amp = np.where(hit, RNG.uniform(10, 100, (n, N_S)), 0).astype(np.float32)
    tb = np.where(hit, RNG.integers(0, 512, (n, N_S)), -1).astype(np.int16)
    width = np.where(hit, RNG.integers(4, 60, (n, N_S)), 0).astype(np.int16)
    order = axis_order(layout.axis, layout.strip)
    for gap in (0, 1, 2):
        got = compute_features(amp, tb, width, hit, order, layout.strip, layout.position_mm, gap)
        want = ref.features_ref(
            amp, tb, width, hit, layout.axis, layout.strip, layout.position_mm, gap
        )
        for name in got.dtype.names:
            np.testing.assert_allclose(
                got[name], want[name], rtol=1e-5, equal_nan=True, err_msg=name
            )


def _random_features(n: int, seed: int = 0) -> np.ndarray:
    """Feature rows spread over all classes; the first half drawn near the X-ray selection."""
    from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE

    rng = np.random.default_rng(seed)
    f = np.zeros(n, FEATURES_DTYPE)
    near = np.arange(n) < n // 2
    f["nx"] = np.where(near, rng.integers(1, 10, n), rng.integers(0, 14, n))
    f["ny"] = np.where(near, rng.integers(1, 10, n), rng.integers(0, 14, n))
    f["n_hits"] = f["nx"] + f["ny"]
    f["ncl_x"] = np.minimum(f["nx"], np.where(near, 1, rng.integers(1, 3, n)))
    f["ncl_y"] = np.minimum(f["ny"], np.where(near, 1, rng.integers(1, 3, n)))
    f["size_x"] = np.minimum(f["nx"], rng.integers(1, 10, n))
    f["size_y"] = np.minimum(f["ny"], rng.integers(1, 10, n))
    f["ex"] = f["nx"] * rng.uniform(10, 50, n)
    f["ey"] = f["ny"] * np.where(near, f["ex"] / np.maximum(f["ny"], 1), rng.uniform(10, 50, n))
    f["ey"] *= rng.uniform(0.6, 1.4, n)
    f["energy"] = f["ex"] + f["ey"]
    with np.errstate(invalid="ignore"):
        f["balance"] = np.abs(f["ex"] - f["ey"]) / f["energy"]
    f["sigma_x"] = rng.uniform(0.0, 1.0, n)
    f["sigma_y"] = rng.uniform(0.0, 1.0, n)
    f["t_spread"] = np.where(near, rng.integers(0, 15, n), rng.integers(0, 40, n))
    f["width_max"] = rng.integers(0, 120, n)
    return f


def test_classify_and_trigger_match_reference() -> None:
    f = _random_features(3000, seed=1)
    for sel in (SelectionConfig(), SelectionConfig(muon_min_width=80, xray_max_size=5)):
        cls = classify(f, sel)
        assert np.array_equal(cls, ref.classify_ref(f, sel))
        assert np.all(np.bincount(cls, minlength=4) > 20)  # every class represented
    f["cls"] = classify(f, SelectionConfig())
    for cfg in (
        TriggerConfig(),
        TriggerConfig(min_hits=5, max_hits=10, require_xy=False, energy_min=100, energy_max=400),
        TriggerConfig(classes=(XRAY,)),
    ):
        got = trigger(f, cfg)
        assert np.array_equal(got, ref.trigger_ref(f, cfg))
        assert 0 < got.sum() < f.size


def test_trigger_options_behave() -> None:
    f = _random_features(2000, seed=2)
    f["cls"] = classify(f, SelectionConfig())
    base = trigger(f, TriggerConfig(min_hits=1, require_xy=False, classes=(0, 1, 2, 3)))
    assert np.array_equal(base, f["n_hits"] >= 1)
    xy = trigger(f, TriggerConfig(min_hits=1, require_xy=True, classes=(0, 1, 2, 3)))
    assert np.array_equal(xy, (f["nx"] > 0) & (f["ny"] > 0))
    mult = trigger(f, TriggerConfig(min_hits=6, max_hits=9, require_xy=False, classes=(0, 1, 2, 3)))
    assert np.array_equal(mult, (f["n_hits"] >= 6) & (f["n_hits"] <= 9))
    win = trigger(f, TriggerConfig(min_hits=0, require_xy=False, energy_min=100, energy_max=200,
                                   classes=(0, 1, 2, 3)))  # fmt: skip
    assert np.array_equal(win, (f["energy"] >= 100) & (f["energy"] <= 200))
    only_x = trigger(f, TriggerConfig(min_hits=0, require_xy=False, classes=(XRAY,)))
    assert np.array_equal(only_x, f["cls"] == XRAY)


# -- configuration --------------------------------------------------------------------------------


def test_configs_from_toml(tmp_path) -> None:
    from agetdaq.readout.datapath.processing.pipeline import ProcessorConfig

    text = """
[processing]
baseline = "table"
cm_method = "median"
window = [10, 60]
k_hit = 6
[processing.selection]
xray_max_size = 6
[processing.trigger]
require_xy = false
classes = [1]
energy_max = 5000.0
"""
    path = tmp_path / "proc.toml"
    path.write_text(text)
    for source in (text, path, str(path)):
        cfg = ProcessorConfig.from_toml(source)
        assert (cfg.baseline, cfg.cm_method, cfg.window, cfg.k_hit) == (
            "table",
            "median",
            (10, 60),
            6,
        )
        assert cfg.selection.xray_max_size == 6 and cfg.selection.xray_max_balance == 0.25
        assert cfg.trigger.classes == (1,) and not cfg.trigger.require_xy
    assert TriggerConfig.from_toml("[processing.trigger]\nmin_hits = 3\n").min_hits == 3
    assert SelectionConfig.from_toml("") == SelectionConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[processing.trigger]\nmin_hit = 3\n", "unknown key"),
        ("[processing.trigger]\nrequire_xy = 1\n", "require_xy"),
        ("[processing.trigger]\nclasses = [7]\n", "classes"),
        ("[processing.selection]\nxray_max_size = 'big'\n", "xray_max_size"),
        ("[processing]\nbaseline = 'daily'\n", "baseline"),
        ("[processing]\nwindow = [60, 10]\n", "window"),
        ("[processing]\ncm_method = 'fft'\n", "cm_method"),
    ],
)
def test_config_errors_are_clear(text: str, message: str) -> None:
    from agetdaq.readout.datapath.processing.pipeline import ProcessorConfig

    with pytest.raises(ValueError, match=message):
        ProcessorConfig.from_toml(text)
