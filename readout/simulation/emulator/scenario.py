"""Emulator scenarios: TOML files that set the physics parameters (params.py) of a run.

A scenario is a shipped name (``readout/simulation/emulator/scenarios/<name>.toml``) or a path to a
TOML file. Tables: [detector], [noise], [source.fe55], [source.muon], [gain], [gain.map],
[resolution] (params.py), [faults] (faults.py) and [board] (board_config.py), all loaded by the one
settings loader (:mod:`agetdaq.readout.config`): unknown keys, wrong types, non-finite numbers and
out-of-range values raise :class:`~agetdaq.readout.config.ConfigError` ``file: key: reason``.
``base = "<name or relative path>"`` inherits another scenario and overrides it table by table,
key by key (lists are replaced, not merged).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agetdaq.readout.config import ConfigError, build, check_keys, in_file, read_toml
from agetdaq.readout.simulation.emulator.board_config import BoardConfig
from agetdaq.readout.simulation.emulator.faults import FaultConfig
from agetdaq.readout.simulation.emulator.params import (
    DetectorParams,
    Fe55Params,
    GainParams,
    MuonParams,
    NoiseParams,
    ResolutionParams,
)

SCENARIO_DIR = Path(__file__).with_name("scenarios")
N_STRIPS = 240
MAX_BASE_DEPTH = 8
TOP_KEYS = (
    "name",
    "description",
    "base",
    "detector",
    "noise",
    "source",
    "gain",
    "resolution",
    "faults",
    "board",
)
SOURCE_KEYS = ("fe55", "muon")


@dataclass(frozen=True)
class Scenario:
    """Everything the physics model needs, plus the board's settings and faults."""

    name: str = "default"
    description: str = ""
    detector: DetectorParams = field(default_factory=DetectorParams)
    noise: NoiseParams = field(default_factory=NoiseParams)
    fe55: Fe55Params = field(default_factory=Fe55Params)
    muon: MuonParams = field(default_factory=MuonParams)
    gain: GainParams = field(default_factory=GainParams)
    resolution: ResolutionParams = field(default_factory=ResolutionParams)
    faults: FaultConfig = field(default_factory=FaultConfig)
    board: BoardConfig = field(default_factory=BoardConfig)
    path: str | None = None

    @classmethod
    def load(cls, name_or_path: str | Path) -> Scenario:
        """Load a shipped scenario by name, else a TOML file by path."""
        path = _resolve(str(name_or_path), None)
        with in_file(path):
            data = _read_with_bases(path, 0)
            return cls.from_dict(data, name=str(data.get("name", path.stem)), path=str(path))

    @classmethod
    def from_dict(cls, data: dict, name: str = "custom", path: str | None = None) -> Scenario:
        """Build and validate a scenario from a parsed TOML dict (``base`` already resolved)."""
        check_keys(data, TOP_KEYS)
        source = data.get("source", {})
        if not isinstance(source, dict):
            raise ConfigError(f"expected a table, got {source!r}", "source")
        check_keys(source, SOURCE_KEYS, "source")
        for key in ("name", "description"):
            if key in data and not isinstance(data[key], str):
                raise ConfigError(f"expected a string, got {data[key]!r}", key)
        scenario = cls(
            name=name,
            description=str(data.get("description", "")),
            detector=build(DetectorParams, data.get("detector", {}), "detector"),
            noise=build(NoiseParams, data.get("noise", {}), "noise"),
            fe55=build(Fe55Params, source.get("fe55", {}), "source.fe55"),
            muon=build(MuonParams, source.get("muon", {}), "source.muon"),
            gain=build(GainParams, data.get("gain", {}), "gain"),
            resolution=build(ResolutionParams, data.get("resolution", {}), "resolution"),
            faults=FaultConfig.from_mapping(data.get("faults", {}), "faults"),
            board=build(BoardConfig, data.get("board", {}), "board"),
            path=path,
        )
        _cross_check(scenario)
        return scenario

    def as_dict(self) -> dict:
        """JSON-serialisable form (tuples become lists), e.g. to store with a run."""
        return _jsonable(dataclasses.asdict(self))


def available() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _resolve(name_or_path: str, relative_to: Path | None) -> Path:
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if "/" not in name_or_path and not name_or_path.endswith(".toml") and shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute():
        path = relative_to.parent / path
    if path.is_file():
        return path
    raise ConfigError(
        f"no scenario {name_or_path!r}: not a shipped name ({', '.join(available())}) nor a file",
        "base" if relative_to is not None else "",
        str(relative_to or ""),
    )


def _read_with_bases(path: Path, depth: int) -> dict:
    if depth > MAX_BASE_DEPTH:
        raise ConfigError(f"more than {MAX_BASE_DEPTH} levels of base (a cycle?) at {path}", "base")
    data = read_toml(path, "scenario")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"expected a scenario name or path, got {base!r}", "base", str(path))
    merged = _merge(_read_with_bases(_resolve(base, path), depth + 1), data)
    merged.pop("name", None)
    if "name" in data:
        merged["name"] = data["name"]
    return merged


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _bad(key: str, reason: str) -> ConfigError:
    return ConfigError(reason, key)


def _check_increasing(points: tuple[tuple[float, float], ...], key: str, lo: float = 0.0) -> None:
    times = [t for t, _ in points]
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ConfigError(f"times must increase, got {times}", key)
    bad = [v for _, v in points if v < lo]
    if bad:
        raise ConfigError(f"values must be >= {lo}, got {bad}", key)


def _cross_check(s: Scenario) -> None:
    det, noise = s.detector, s.noise
    if det.fluctuation_b(det.resolution_fwhm) <= 0:
        limit = 2.0 * math.sqrt(2.0 * math.log(2.0)) * math.sqrt(det.fano * det.w_value_ev / 5900.0)
        raise _bad(
            "detector.resolution_fwhm",
            f"{det.resolution_fwhm} is below the Fano limit {limit:.3f} "
            f"(W {det.w_value_ev} eV, F {det.fano})",
        )
    drift_bins = det.drift_length_mm / det.drift_velocity_mm_per_us * 1000.0 / det.bin_ns
    peak_bins = det.peaking_time_ns / det.bin_ns
    if det.trigger_bin + drift_bins + peak_bins >= 512:
        raise _bad(
            "detector.trigger_bin",
            f"{det.trigger_bin} + {drift_bins:.0f} drift bins + {peak_bins:.0f} peaking bins puts "
            "pulses past the 512-bin window (lower it, or raise wckdiv / drift velocity)",
        )
    if det.polarity == 0 and noise.pedestal_mean < 2048:
        raise _bad(
            "detector.polarity",
            "0 (signals going down) needs noise.pedestal_mean >= 2048, or they clip at 0",
        )
    for key in ("dead_strips", "noisy_strips"):
        bad = [v for v in getattr(noise, key) if not 0 <= v < N_STRIPS]
        if bad:
            raise _bad(f"noise.{key}", f"strip numbers must be 0..{N_STRIPS - 1}, got {bad}")
    _check_increasing(noise.time_multiplier, "noise.time_multiplier")
    _check_increasing(s.gain.steps, "gain.steps")
    gmap = s.gain.map
    for i, r in enumerate(gmap.regions):
        if r.ix >= gmap.nx or r.iy >= gmap.ny:
            raise _bad(
                f"gain.map.regions[{i}]",
                f"cell ({r.ix}, {r.iy}) is outside the {gmap.nx} x {gmap.ny} grid",
            )
    half = det.active_size_mm / 2.0
    if s.fe55.area == "spot" and any(abs(c) > half for c in s.fe55.centre_mm):
        raise _bad("source.fe55.centre_mm", f"{list(s.fe55.centre_mm)} is outside the strip area")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
