"""Software trigger on the features: numpy, vectorised per batch (:func:`trigger`), and one
numba pass for the data path that classifies and triggers (:func:`classify_trigger`, the same
decisions as :func:`classify` then :func:`trigger`).

The event classes it accepts come from :mod:`agetdaq.readout.analysis.classification` (re-exported
here for the processing). Energies are in ADC (sums of hit amplitudes): no energy calibration at
this stage.
Both configs load from TOML tables ``[processing.selection]`` / ``[processing.trigger]`` through the
one settings loader (:mod:`agetdaq.readout.config`), which checks every value's kind and range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from agetdaq.readout.analysis.classification import (
    MUON,
    NOISE,
    OTHER,
    XRAY,
    SelectionConfig,
    classify,
)
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load, load_table, setting
from agetdaq.readout.schema import EventClass

__all__ = [
    "MUON",
    "NOISE",
    "OTHER",
    "XRAY",
    "SelectionConfig",
    "TriggerConfig",
    "classify",
    "classify_trigger",
    "config_from_dict",
    "load_table",
    "selection_params",
    "trigger",
]


@dataclass(frozen=True)
class TriggerConfig:
    """Software trigger: every enabled condition must hold."""

    min_hits: int = setting(2, "multiplicity: hit strips, both axes", lo=0)
    max_hits: int = setting(0, "0 = no upper limit", lo=0)
    require_xy: bool = setting(True, "at least one hit on X and one on Y")
    energy_min: float = setting(0.0, "ADC, ex + ey", lo=0.0)
    energy_max: float = setting(math.inf, "ADC, ex + ey (inf = no upper limit)", gt=0.0)
    classes: tuple[int, ...] = setting(
        (XRAY, MUON, OTHER), "accepted classes", choices=tuple(int(c) for c in EventClass)
    )

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "processing.trigger"
    ) -> TriggerConfig:
        """From a TOML file, TOML text or a parsed dict; ConfigError naming file and key."""
        return load(cls, source, table)


def trigger(f: np.ndarray, cfg: TriggerConfig, cls: np.ndarray | None = None) -> np.ndarray:
    """bool per event: the software trigger decision (uses f["cls"] unless cls is given)."""
    cls = f["cls"] if cls is None else cls
    ok = f["n_hits"] >= cfg.min_hits
    if cfg.max_hits > 0:
        ok &= f["n_hits"] <= cfg.max_hits
    if cfg.require_xy:
        ok &= (f["nx"] > 0) & (f["ny"] > 0)
    ok &= (f["energy"] >= cfg.energy_min) & (f["energy"] <= cfg.energy_max)
    ok &= np.isin(cls, np.asarray(cfg.classes, dtype=np.int8))
    return ok


def selection_params(sel: SelectionConfig, trg: TriggerConfig) -> tuple[np.ndarray, np.ndarray]:
    """The two configs as the arrays :func:`classify_trigger` takes: float64 (16,) and the
    accepted classes as a bool table over the class codes."""
    p = np.array(
        [sel.noise_max_hits, sel.xray_min_size, sel.xray_max_size, sel.xray_max_balance,
         sel.xray_min_sigma_mm, sel.xray_max_sigma_mm, sel.xray_max_t_spread, sel.muon_min_hits,
         sel.muon_min_axis_hits, sel.muon_min_t_spread, sel.muon_min_width, trg.min_hits,
         trg.max_hits, float(trg.require_xy), trg.energy_min, trg.energy_max],
        np.float64,
    )  # fmt: skip
    accepted = np.zeros(max(int(c) for c in EventClass) + 1, np.bool_)
    for c in trg.classes:
        accepted[int(c)] = True
    return p, accepted


@njit(cache=True, nogil=True)
def classify_trigger(f, p, accepted):
    """In place: f["cls"] and f["trig"] of every event, as :func:`classify` then :func:`trigger`
    (their numpy twins); float thresholds compare in float32, as numpy does with these columns."""
    f4 = np.float32
    for i in range(f.shape[0]):
        r = f[i]
        n_hits = np.int64(r.n_hits)
        noise = n_hits <= p[0]
        muon = (
            n_hits >= p[7]
            or max(np.int64(r.nx), np.int64(r.ny)) >= p[8]
            or np.int64(r.t_spread) >= p[9]
            or (p[10] > 0 and np.int64(r.width_max) >= p[10])
        )
        xray = (
            r.ncl_x == 1
            and r.ncl_y == 1
            and p[1] <= r.size_x <= p[2]
            and p[1] <= r.size_y <= p[2]
            and r.balance < f4(p[3])
            and f4(p[4]) <= r.sigma_x <= f4(p[5])
            and f4(p[4]) <= r.sigma_y <= f4(p[5])
            and r.t_spread <= p[6]
        )
        cls = NOISE if noise else (MUON if muon else (XRAY if xray else OTHER))
        r.cls = cls
        ok = n_hits >= p[11] and (p[12] <= 0 or n_hits <= p[12])
        ok = ok and (p[13] == 0 or (r.nx > 0 and r.ny > 0))
        ok = ok and f4(p[14]) <= r.energy <= f4(p[15])
        r.trig = ok and accepted[cls]
