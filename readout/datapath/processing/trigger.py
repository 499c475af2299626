"""Software trigger and event classification on the features (numpy, vectorised per batch).

Classes: 0 noise, 1 X-ray-like, 2 muon-like, 3 other; tested in the order noise, muon, X-ray.
Defaults follow DETECTOR.md ("X-ray-like selection"); time values are in time bins (40 ns at
wckdiv 4). Energies are in ADC (sums of hit amplitudes): no energy calibration at this stage.
Both configs load from TOML tables ``[processing.selection]`` / ``[processing.trigger]``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agetdaq.readout.schema import EventClass

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# the class codes of agetdaq.readout.schema, as plain ints for numpy
NOISE, XRAY, MUON, OTHER = (int(c) for c in (EventClass.NOISE, EventClass.XRAY, EventClass.MUON,
                                             EventClass.OTHER))  # fmt: skip

C = TypeVar("C")


def load_table(source: str | Path | dict[str, Any], table: str) -> dict[str, Any]:
    """The dotted ``table`` (e.g. "processing.trigger") of a TOML file (Path or "*.toml" str),
    TOML text or an already parsed dict. A missing table gives {}.
    """
    if isinstance(source, dict):
        data = source
    elif isinstance(source, Path) or source.strip().endswith(".toml"):
        data = tomllib.loads(Path(source).read_text())
    else:
        data = tomllib.loads(source)
    for key in table.split(".") if table else ():
        data = data.get(key, {})
        if not isinstance(data, dict):
            raise ValueError(f"[{table}] is not a table")
    return data


def config_from_dict(cls: type[C], values: dict[str, Any], where: str = "") -> C:
    """Build a dataclass from a dict; unknown keys or values of the wrong kind raise ValueError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{where or cls.__name__}]")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple))
            value = tuple(value) if ok else value
        else:
            ok = True
        if not ok:
            raise ValueError(f"[{where or cls.__name__}] {key}: bad value {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class SelectionConfig:
    """Classification thresholds (defaults: DETECTOR.md, CAST-like selection)."""

    noise_max_hits: int = 1  # <= this many hit strips: noise
    xray_min_size: int = 2  # strips in the (single) cluster of each axis
    xray_max_size: int = 8
    xray_max_balance: float = 0.25  # |Ex - Ey| / (Ex + Ey)
    xray_min_sigma_mm: float = 0.15  # per-axis cluster RMS width bounds (CAST selection)
    xray_max_sigma_mm: float = 0.75
    xray_max_t_spread: int = 12  # peak-bin spread of an X-ray cloud, bins
    muon_min_hits: int = 20  # this many hit strips (both axes) or more: muon
    muon_min_axis_hits: int = 12  # or this many on one axis
    muon_min_t_spread: int = 20  # or this peak-bin spread (a track along the drift), bins
    muon_min_width: int = 0  # or a pulse this long, bins (0 = not used)

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "processing.selection"
    ) -> SelectionConfig:
        return config_from_dict(cls, load_table(source, table), table)


@dataclass(frozen=True)
class TriggerConfig:
    """Software trigger: every enabled condition must hold."""

    min_hits: int = 2  # multiplicity: hit strips, both axes
    max_hits: int = 0  # 0 = no upper limit
    require_xy: bool = True  # at least one hit on X and one on Y
    energy_min: float = 0.0  # ADC, ex + ey
    energy_max: float = math.inf
    classes: tuple[int, ...] = field(default=(XRAY, MUON, OTHER))  # accepted classes

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "processing.trigger"
    ) -> TriggerConfig:
        cfg = config_from_dict(cls, load_table(source, table), table)
        codes = [int(c) for c in EventClass]
        bad = [c for c in cfg.classes if c not in codes]
        if bad:
            raise ValueError(f"[{table}] classes must be in {codes}, not {bad}")
        return cfg


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
