"""Software trigger and event classification on the features: numpy, vectorised per batch
(:func:`classify`, :func:`trigger`), and one numba pass for the data path
(:func:`classify_trigger`, the same decisions).

Classes: 0 noise, 1 X-ray-like, 2 muon-like, 3 other; tested in the order noise, muon, X-ray.
Defaults follow DETECTOR.md ("X-ray-like selection"); time values are in time bins (40 ns at
wckdiv 4). Energies are in ADC (sums of hit amplitudes): no energy calibration at this stage.
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

# build / load_table are the one settings loader; the calibration configs import them from here
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load, load_table, setting
from agetdaq.readout.schema import EventClass

__all__ = [
    "SelectionConfig",
    "TriggerConfig",
    "classify",
    "classify_trigger",
    "config_from_dict",
    "load_table",
    "selection_params",
    "trigger",
]

# the class codes of agetdaq.readout.schema, as plain ints for numpy
NOISE, XRAY, MUON, OTHER = (int(c) for c in (EventClass.NOISE, EventClass.XRAY, EventClass.MUON,
                                             EventClass.OTHER))  # fmt: skip


@dataclass(frozen=True)
class SelectionConfig:
    """Classification thresholds (defaults: DETECTOR.md, CAST-like selection)."""

    noise_max_hits: int = setting(1, "<= this many hit strips: noise", lo=0)
    xray_min_size: int = setting(2, "strips in the (single) cluster of each axis", lo=0)
    xray_max_size: int = setting(8, lo=0, hi=240)
    xray_max_balance: float = setting(0.25, "|Ex - Ey| / (Ex + Ey)", lo=0.0)
    xray_min_sigma_mm: float = setting(0.15, "per-axis cluster RMS width bounds", lo=0.0)
    xray_max_sigma_mm: float = setting(0.75, lo=0.0)
    xray_max_t_spread: int = setting(12, "peak-bin spread of an X-ray cloud, bins", lo=0)
    muon_min_hits: int = setting(20, "this many hit strips (both axes) or more: muon", lo=0)
    muon_min_axis_hits: int = setting(12, "or this many on one axis", lo=0)
    muon_min_t_spread: int = setting(20, "or this peak-bin spread (a track along z)", lo=0)
    muon_min_width: int = setting(0, "or a pulse this long, bins (0 = not used)", lo=0)

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "processing.selection"
    ) -> SelectionConfig:
        """From a TOML file, TOML text or a parsed dict; ConfigError naming file and key."""
        return load(cls, source, table)


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


def classify(f: np.ndarray, cfg: SelectionConfig) -> np.ndarray:
    """int8 class per event of a FEATURES_DTYPE array."""
    noise = f["n_hits"] <= cfg.noise_max_hits
    muon = (
        (f["n_hits"] >= cfg.muon_min_hits)
        | (np.maximum(f["nx"], f["ny"]) >= cfg.muon_min_axis_hits)
        | (f["t_spread"] >= cfg.muon_min_t_spread)
    )
    if cfg.muon_min_width > 0:
        muon |= f["width_max"] >= cfg.muon_min_width
    with np.errstate(invalid="ignore"):
        xray = (
            (f["ncl_x"] == 1)
            & (f["ncl_y"] == 1)
            & (f["size_x"] >= cfg.xray_min_size)
            & (f["size_x"] <= cfg.xray_max_size)
            & (f["size_y"] >= cfg.xray_min_size)
            & (f["size_y"] <= cfg.xray_max_size)
            & (f["balance"] < cfg.xray_max_balance)
            & (f["sigma_x"] >= cfg.xray_min_sigma_mm)
            & (f["sigma_x"] <= cfg.xray_max_sigma_mm)
            & (f["sigma_y"] >= cfg.xray_min_sigma_mm)
            & (f["sigma_y"] <= cfg.xray_max_sigma_mm)
            & (f["t_spread"] <= cfg.xray_max_t_spread)
        )
    cls = np.full(f.shape, OTHER, dtype=np.int8)
    cls[xray] = XRAY
    cls[muon] = MUON
    cls[noise] = NOISE
    return cls


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
