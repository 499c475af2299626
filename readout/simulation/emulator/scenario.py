"""Emulator scenarios: TOML files that set the physics parameters (params.py) of a run.

A scenario is a shipped name (``readout/simulation/emulator/scenarios/<name>.toml``) or a path to a
TOML file. Tables: [detector], [noise], [source.fe55], [source.muon], [gain], [gain.map],
[resolution] are checked against the dataclasses in params.py (unknown keys, wrong types and
out-of-range values raise :class:`ScenarioError` naming the key); [faults] and [board] are kept as
raw dicts for the board side. ``base = "<name or relative path>"`` inherits another scenario and
overrides it table by table, key by key (lists are replaced, not merged).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agetdaq.readout.simulation.emulator.params import (
    DetectorParams,
    Fe55Params,
    GainParams,
    MuonParams,
    NoiseParams,
    ResolutionParams,
)

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

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


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``key`` is the dotted key at fault (or '' for the file)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@dataclass(frozen=True)
class Scenario:
    """Everything the physics model needs, plus the board's raw tables."""

    name: str = "default"
    description: str = ""
    detector: DetectorParams = field(default_factory=DetectorParams)
    noise: NoiseParams = field(default_factory=NoiseParams)
    fe55: Fe55Params = field(default_factory=Fe55Params)
    muon: MuonParams = field(default_factory=MuonParams)
    gain: GainParams = field(default_factory=GainParams)
    resolution: ResolutionParams = field(default_factory=ResolutionParams)
    faults: dict = field(default_factory=dict)
    board: dict = field(default_factory=dict)
    path: str | None = None

    @classmethod
    def load(cls, name_or_path: str | Path) -> Scenario:
        """Load a shipped scenario by name, else a TOML file by path."""
        path = _resolve(str(name_or_path), None)
        data = _read_with_bases(path, 0)
        return cls.from_dict(data, name=str(data.get("name", path.stem)), path=str(path))

    @classmethod
    def from_dict(cls, data: dict, name: str = "custom", path: str | None = None) -> Scenario:
        """Build and validate a scenario from a parsed TOML dict (``base`` already resolved)."""
        _check_keys(data, TOP_KEYS, "")
        source = data.get("source", {})
        _require_table(source, "source")
        _check_keys(source, SOURCE_KEYS, "source")
        for key in ("faults", "board"):
            _require_table(data.get(key, {}), key)
        for key in ("name", "description"):
            if key in data and not isinstance(data[key], str):
                raise ScenarioError(key, f"expected a string, got {data[key]!r}")
        scenario = cls(
            name=name,
            description=str(data.get("description", "")),
            detector=build(DetectorParams, data.get("detector", {}), "detector"),
            noise=build(NoiseParams, data.get("noise", {}), "noise"),
            fe55=build(Fe55Params, source.get("fe55", {}), "source.fe55"),
            muon=build(MuonParams, source.get("muon", {}), "source.muon"),
            gain=build(GainParams, data.get("gain", {}), "gain"),
            resolution=build(ResolutionParams, data.get("resolution", {}), "resolution"),
            faults=dict(data.get("faults", {})),
            board=dict(data.get("board", {})),
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
    raise ScenarioError(
        "",
        f"no scenario {name_or_path!r}: not a shipped name ({', '.join(available())}) nor a file",
    )


def _read_with_bases(path: Path, depth: int) -> dict:
    if depth > MAX_BASE_DEPTH:
        raise ScenarioError(
            "base", f"more than {MAX_BASE_DEPTH} levels of base (a cycle?) at {path}"
        )
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("", f"{path}: not valid TOML: {exc}") from exc
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ScenarioError("base", f"expected a scenario name or path, got {base!r}")
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


def _require_table(value: Any, key: str) -> None:
    if not isinstance(value, dict):
        raise ScenarioError(key, f"expected a table, got {value!r}")


def _check_keys(data: dict, known: typing.Iterable[str], where: str) -> None:
    known = tuple(known)
    for key in data:
        if key not in known:
            raise ScenarioError(_join(where, key), f"unknown key (known: {', '.join(known)})")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a TOML table, checking keys, types and limits."""
    _require_table(data, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(data, fields, where)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = _join(where, name)
        kwargs[name] = _convert(hints[name], value, key)
        _check_limits(fields[name].metadata, kwargs[name], key)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list):
            raise ScenarioError(key, f"expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(args) != len(value):
            raise ScenarioError(key, f"expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported parameter type {tp} for {key}")  # pragma: no cover
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ScenarioError(key, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported parameter type {tp} for {key}")  # pragma: no cover


def _check_limits(meta: Any, value: Any, key: str) -> None:
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    unit = f" {meta.get('unit')}" if meta.get("unit") else ""
    if choices is not None and value not in choices:
        raise ScenarioError(key, f"{value!r} is not one of {', '.join(map(repr, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ScenarioError(key, f"{value}{unit} is below the minimum {lo}{unit}")
        if hi is not None and value > hi:
            raise ScenarioError(key, f"{value}{unit} is above the maximum {hi}{unit}")


def _check_increasing(points: tuple[tuple[float, float], ...], key: str, lo: float = 0.0) -> None:
    times = [t for t, _ in points]
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ScenarioError(key, f"times must increase, got {times}")
    bad = [v for _, v in points if v < lo]
    if bad:
        raise ScenarioError(key, f"values must be >= {lo}, got {bad}")


def _cross_check(s: Scenario) -> None:
    det, noise = s.detector, s.noise
    if det.fluctuation_b(det.resolution_fwhm) <= 0:
        limit = 2.0 * math.sqrt(2.0 * math.log(2.0)) * math.sqrt(det.fano * det.w_value_ev / 5900.0)
        raise ScenarioError(
            "detector.resolution_fwhm",
            f"{det.resolution_fwhm} is below the Fano limit {limit:.3f} "
            f"(W {det.w_value_ev} eV, F {det.fano})",
        )
    drift_bins = det.drift_length_mm / det.drift_velocity_mm_per_us * 1000.0 / det.bin_ns
    peak_bins = det.peaking_time_ns / det.bin_ns
    if det.trigger_bin + drift_bins + peak_bins >= 512:
        raise ScenarioError(
            "detector.trigger_bin",
            f"{det.trigger_bin} + {drift_bins:.0f} drift bins + {peak_bins:.0f} peaking bins puts "
            "pulses past the 512-bin window (lower it, or raise wckdiv / drift velocity)",
        )
    if det.polarity == 0 and noise.pedestal_mean < 2048:
        raise ScenarioError(
            "detector.polarity",
            "0 (signals going down) needs noise.pedestal_mean >= 2048, or they clip at 0",
        )
    for key in ("dead_strips", "noisy_strips"):
        bad = [v for v in getattr(noise, key) if not 0 <= v < N_STRIPS]
        if bad:
            raise ScenarioError(
                f"noise.{key}", f"strip numbers must be 0..{N_STRIPS - 1}, got {bad}"
            )
    _check_increasing(noise.time_multiplier, "noise.time_multiplier")
    _check_increasing(s.gain.steps, "gain.steps")
    gmap = s.gain.map
    for i, r in enumerate(gmap.regions):
        if r.ix >= gmap.nx or r.iy >= gmap.ny:
            raise ScenarioError(
                f"gain.map.regions[{i}]",
                f"cell ({r.ix}, {r.iy}) is outside the {gmap.nx} x {gmap.ny} grid",
            )
    half = det.active_size_mm / 2.0
    if s.fe55.area == "spot" and any(abs(c) > half for c in s.fe55.centre_mm):
        raise ScenarioError(
            "source.fe55.centre_mm", f"{list(s.fe55.centre_mm)} is outside the strip area"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
