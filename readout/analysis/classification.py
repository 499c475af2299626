"""Event classes from the features: noise, X-ray-like, muon-like, other (numpy, per batch).

The DAQ's process stage classifies every processed event with these rules (the ``cls`` column
of the event table); the 55Fe analysis re-applies them with its own shape cuts. Tested in the
order noise, muon, X-ray. Defaults follow DETECTOR.md ("X-ray-like selection"); time values are
in time bins (40 ns at wckdiv 4), energies in ADC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.config import load, setting
from agetdaq.readout.schema import EventClass

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
