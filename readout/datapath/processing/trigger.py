"""Software trigger on the features (numpy, vectorised per batch).

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
    "config_from_dict",
    "load_table",
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
