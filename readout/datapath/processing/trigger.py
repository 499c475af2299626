"""Software trigger and event classification on the features (numpy, vectorised per batch).

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

# build / load_table are the one settings loader; the calibration configs import them from here
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load, load_table, setting
from agetdaq.readout.schema import EventClass

__all__ = [
    "SelectionConfig",
    "TriggerConfig",
    "classify",
    "config_from_dict",
    "load_table",
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
