"""X-ray-like event selection on per-event features for the 55Fe calibration.

Events come as a numpy structured array or a dict of equal-length arrays. Field names follow the
calibration contract (energy_adc, n_clusters_x/y, size_x/y, balance, x_mm, y_mm, time_s: the
stream's ``summary`` names, agetdaq.readout.schema); the event-table column names (energy, ncl_x,
ncl_y) are accepted as aliases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load_table
from agetdaq.readout.schema import SUMMARY_FIELDS

Events = np.ndarray | dict[str, np.ndarray]

# contract (stream) name -> the event-table column of the same field
FIELD_ALIASES: dict[str, tuple[str, ...]] = {k: (v,) for k, v in SUMMARY_FIELDS.items() if k != v}


def field_names(events: Events) -> tuple[str, ...]:
    if isinstance(events, np.ndarray):
        return tuple(events.dtype.names or ())
    return tuple(events)


def n_events(events: Events) -> int:
    """Number of events; dict columns must all have the same length."""
    if isinstance(events, np.ndarray):
        if events.dtype.names is None:
            raise ValueError("events must be a structured array or a dict of arrays")
        return int(events.shape[0]) if events.ndim else 1
    lengths = {k: len(np.atleast_1d(v)) for k, v in events.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"event columns differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def has_field(events: Events, name: str) -> bool:
    names = field_names(events)
    return name in names or any(a in names for a in FIELD_ALIASES.get(name, ()))


def column(events: Events, name: str) -> np.ndarray:
    """One column by its contract name (or an alias), as a 1-D array."""
    names = field_names(events)
    for candidate in (name, *FIELD_ALIASES.get(name, ())):
        if candidate in names:
            return np.atleast_1d(np.asarray(events[candidate]))
    raise ValueError(f"events lack the field {name!r} (have: {', '.join(names) or 'none'})")


@dataclass(frozen=True)
class XraySelection:
    """Cuts of an X-ray-like event (defaults: DETECTOR.md, CAST-like). A cut whose field is
    missing from the events raises ValueError unless the cut is disabled."""

    single_cluster: bool = True  # exactly one cluster on X and one on Y
    size_min: int = 2  # strips in the cluster of each axis
    size_max: int = 8  # 0 disables both size cuts
    max_balance: float = 0.25  # |E_X - E_Y| / (E_X + E_Y); inf disables
    energy_min_adc: float = 0.0
    energy_max_adc: float = math.inf
    fiducial_radius_mm: float = math.inf  # around the readout centre; inf disables

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "calibration.selection"
    ) -> XraySelection:
        return config_from_dict(cls, load_table(source, table), table)


def cut_masks(events: Events, sel: XraySelection) -> dict[str, np.ndarray]:
    """Boolean mask of each enabled cut, in the order they are applied."""
    masks: dict[str, np.ndarray] = {}
    energy = column(events, "energy_adc").astype(float)
    with np.errstate(invalid="ignore"):
        masks["energy"] = (energy >= sel.energy_min_adc) & (energy <= sel.energy_max_adc)
        if sel.single_cluster:
            masks["one_cluster"] = (column(events, "n_clusters_x") == 1) & (
                column(events, "n_clusters_y") == 1
            )
        if sel.size_max > 0:
            sx, sy = column(events, "size_x"), column(events, "size_y")
            masks["size"] = (
                (sx >= sel.size_min) & (sx <= sel.size_max) & (sy >= sel.size_min)
                & (sy <= sel.size_max)
            )  # fmt: skip
        if math.isfinite(sel.max_balance):
            masks["balance"] = np.abs(column(events, "balance")) < sel.max_balance
        if math.isfinite(sel.fiducial_radius_mm):
            r = np.hypot(column(events, "x_mm"), column(events, "y_mm"))
            masks["fiducial"] = r <= sel.fiducial_radius_mm
    return masks


def select_xrays(events: Events, sel: XraySelection | None = None) -> np.ndarray:
    """Boolean mask of the X-ray-like events (NaN features fail their cut)."""
    sel = sel or XraySelection()
    mask = np.ones(n_events(events), dtype=bool)
    for m in cut_masks(events, sel).values():
        mask &= m
    return mask


def cut_flow(events: Events, sel: XraySelection | None = None) -> dict[str, int]:
    """Events left after each cut, applied in turn (first entry: all events)."""
    sel = sel or XraySelection()
    mask = np.ones(n_events(events), dtype=bool)
    flow = {"all": int(mask.size)}
    for name, m in cut_masks(events, sel).items():
        mask &= m
        flow[name] = int(mask.sum())
    return flow
