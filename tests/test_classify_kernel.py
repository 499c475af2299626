"""The data path's one-pass classification and software trigger (numba) against the numpy
functions (and their plain-Python references) on random features, NaNs and thresholds on the
edge included."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.readout.datapath.processing import reference as ref
from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE
from agetdaq.readout.datapath.processing.trigger import (
    SelectionConfig,
    TriggerConfig,
    classify,
    classify_trigger,
    selection_params,
    trigger,
)


def _features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.zeros(n, FEATURES_DTYPE)
    for name in ("n_hits", "nx", "ny", "ncl_x", "ncl_y", "size_x", "size_y", "t_spread",
                 "width_max"):  # fmt: skip
        f[name] = rng.integers(0, 30, n)
    f["ncl_x"] = rng.integers(0, 3, n)
    f["ncl_y"] = rng.integers(0, 3, n)
    for name in ("ex", "ey", "energy", "amp_max"):
        f[name] = rng.uniform(0, 3000, n)
    f["balance"] = rng.uniform(0, 0.5, n)
    f["sigma_x"] = rng.uniform(0, 1, n)
    f["sigma_y"] = rng.uniform(0, 1, n)
    nan = rng.random(n) < 0.1
    f["balance"][nan] = np.nan
    f["sigma_x"][rng.random(n) < 0.1] = np.nan
    f["balance"][rng.random(n) < 0.05] = np.float32(0.25)  # on the edge
    f["energy"][rng.random(n) < 0.05] = np.float32(0.1)
    return f


STRICT = TriggerConfig(
    min_hits=3, max_hits=25, require_xy=False, energy_min=0.1, energy_max=2500.0, classes=(1,)
)
CASES = [
    (SelectionConfig(), TriggerConfig()),
    (SelectionConfig(muon_min_width=20, xray_max_balance=0.25), STRICT),
]


@pytest.mark.parametrize(("sel", "trg"), CASES)
def test_one_pass_kernel_equals_numpy_and_reference(sel, trg) -> None:
    for seed in range(5):
        f = _features(400, seed)
        want_cls = classify(f, sel)
        want_trig = trigger(f, trg, want_cls)
        got = f.copy()
        classify_trigger(got, *selection_params(sel, trg))
        np.testing.assert_array_equal(got["cls"], want_cls)
        np.testing.assert_array_equal(got["trig"], want_trig)
        np.testing.assert_array_equal(got["cls"], ref.classify_ref(f, sel))
        f["cls"] = want_cls
        np.testing.assert_array_equal(got["trig"], ref.trigger_ref(f, trg))
