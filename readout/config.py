"""The one settings mechanism: TOML tables into frozen dataclasses, every value checked on load.

Used for the DAQ settings, the software trigger, the monitor (GUI) settings, the alarm rules and
the emulator scenarios and faults. A settings class is a plain dataclass; a field declares its
limits with :func:`setting` (``lo``/``hi`` inclusive, ``gt``/``lt`` exclusive, ``choices``, ...).
:func:`build` makes an instance from a parsed table and refuses, with one :class:`ConfigError`
naming file, key and reason:

* unknown keys (``daq.nosuch: unknown key (known: ...)``);
* values of the wrong kind (no bool for an int, no string for a number, ...);
* non-finite numbers (nan always; inf unless the field's default is inf, "no limit", or the field
  says ``allow_inf=True``);
* values outside the field's limits, and what a class's ``__post_init__`` refuses.

Adding a setting is one field: ``heartbeat_s: float = setting(1.0, gt=0.0, hi=3600.0)``.

Why a loader of our own and not pydantic v2 or msgspec: the settings classes are plain frozen
dataclasses that live in the layers that use them (link, store, datapath, simulation, gui) and are
also built directly in code and tests. pydantic would make them its own dataclasses or models
(validation on every construction; refusing unknown keys of a stdlib dataclass needs a config hook
on each class); msgspec converts into stdlib dataclasses but refuses unknown keys only for its own
``Struct`` types. Neither gives the ``file: key: reason`` message without a translation layer, and
the fault flags (``--fault drop=0.01``) need text values parsed the same way. What we need --
strict kinds, finite numbers, limits from field metadata, dotted keys -- is this one module with
no new dependency on the DAQ PC (tests/test_config_loader.py). It imports nothing of ours, so
every layer, the GUI and the emulator included, may use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")
_LIMITS = ("lo", "hi", "gt", "lt")
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


class ConfigError(ValueError):
    """A settings file or value that cannot be used: ``file: key: reason``.

    ``file`` is the file (or '<text>', 'command line', ...), ``key`` the dotted key at fault
    ('' for the whole file), ``reason`` what is wrong. Any part may be empty.
    """

    def __init__(self, reason: str, key: str = "", file: str = "") -> None:
        super().__init__(reason, key, file)  # all three, so that it pickles
        self.reason, self.key, self.file = reason, key, file

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.key, self.reason) if part)

    def within(self, prefix: str = "", file: str = "") -> ConfigError:
        """The same error seen from an enclosing table ``prefix`` and/or in ``file``."""
        return ConfigError(self.reason, join(prefix, self.key), self.file or file)


def join(prefix: str, key: str) -> str:
    """Dotted key: join('daq', 'batch') == 'daq.batch'; list items are 'regions[0]'."""
    if not prefix:
        return key
    if not key:
        return prefix
    return prefix + key if key.startswith("[") else f"{prefix}.{key}"


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    lo: float | None = None,
    hi: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
    nonempty: bool = False,
    allow_inf: bool = False,
    unit: str = "",
    default_factory: Any = dataclasses.MISSING,
    load: bool = True,
) -> Any:
    """A dataclass field with its documentation and limits (checked by :func:`build`).

    Limits apply to a number, or to each number of a list; ``choices`` to a value, or to each
    item of a list; ``nonempty`` to strings and lists; ``load=False`` keeps a field out of files.
    """
    meta = {
        "doc": doc,
        "lo": lo,
        "hi": hi,
        "gt": gt,
        "lt": lt,
        "choices": choices,
        "nonempty": nonempty,
        "allow_inf": allow_inf,
        "unit": unit,
        "load": load,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- files -------------------------------------------------------------------------------------


@contextlib.contextmanager
def in_file(file: str | Path) -> Iterator[None]:
    """Errors raised inside name ``file`` (unless they already name one)."""
    try:
        yield
    except ConfigError as exc:
        raise exc.within(file=str(file)) from None


def parse_toml(text: str, file: str = "<text>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None


def read_text(path: str | Path, what: str = "settings") -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read {what}: {reason}", file=str(path)) from None


def read_toml(path: str | Path, what: str = "settings") -> dict[str, Any]:
    return parse_toml(read_text(path, what), str(path))


def table(data: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    """The sub-table ``dotted`` ('processing.trigger') of parsed TOML; {} when it is absent."""
    out: Any = data
    parts = dotted.split(".") if dotted else []
    for i, part in enumerate(parts):
        out = out.get(part, {})
        if not isinstance(out, dict):
            raise ConfigError(f"expected a table, got {out!r}", ".".join(parts[: i + 1]))
    return dict(out)


def source_name(source: str | Path | Mapping[str, Any]) -> str:
    """What errors call a source: the file, '<text>' for TOML text, '' for a parsed dict."""
    if isinstance(source, Mapping):
        return ""
    if isinstance(source, Path) or source.strip().endswith(".toml"):
        return str(source)
    return "<text>"


def load_table(source: str | Path | Mapping[str, Any], dotted: str) -> dict[str, Any]:
    """Table ``dotted`` of a TOML file (a Path or a "*.toml" str), of TOML text or of a parsed
    dict; {} when it is absent."""
    name = source_name(source)
    with in_file(name):
        if isinstance(source, Mapping):
            return table(source, dotted)
        return table(read_toml(source) if name != "<text>" else parse_toml(source), dotted)


def load(cls: type[T], source: str | Path | Mapping[str, Any], dotted: str = "") -> T:
    """``cls`` from table ``dotted`` of a TOML file, TOML text or a parsed dict; errors name
    the file and the dotted key."""
    with in_file(source_name(source)):
        return build(cls, load_table(source, dotted), dotted)


# ---- tables to dataclasses ---------------------------------------------------------------------


def loadable_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("load", True)}


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def limits(f: dataclasses.Field) -> Mapping[str, Any]:
    """The limits of a field; a field whose default is infinite accepts infinity ("no limit")."""
    if isinstance(f.default, float) and math.isinf(f.default):
        return {**f.metadata, "allow_inf": True}
    return f.metadata


def check_keys(data: Mapping[str, Any], known: typing.Iterable[str], where: str = "") -> None:
    known = tuple(known)
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key (known: {', '.join(known)})", join(where, str(key)))


def build(
    cls: type[T],
    data: Any,
    key: str = "",
    *,
    base: T | None = None,
    strings: bool = False,
) -> T:
    """``cls`` from the table ``data`` found at ``key``; missing keys keep the defaults (or the
    values of ``base``). ``strings``: values may also be given as text (command-line flags)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table, got {data!r}", key)
    fields = loadable_fields(cls)
    check_keys(data, fields, key)
    if base is None:
        for name, f in fields.items():
            if name not in data and _required(f):
                raise ConfigError("missing (required)", join(key, name))
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        where = join(key, name)
        kwargs[name] = convert(hints[name], value, where, strings)
        check_limits(limits(fields[name]), kwargs[name], where)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError as exc:
        raise exc.within(key) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key) from None


def convert(tp: Any, value: Any, key: str, strings: bool = False) -> Any:
    """``value`` as type ``tp`` (strictly: an int is a float, nothing else changes kind)."""
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else build(tp, value, key, strings=strings)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # TOML has no null: None is a default only
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for arg in args[:-1]:
            with contextlib.suppress(ConfigError):
                return convert(arg, value, key, strings)
        return convert(args[-1], value, key, strings)
    if origin is tuple:
        return _tuple(tp, value, key, strings)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key)
        return dict(value)
    if tp is bool:
        if strings and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key)
        return value
    if tp is int:
        if strings and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value.strip(), 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", key)
        return value
    if tp is float:
        if strings and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key)
        return value
    raise TypeError(f"unsupported settings type {tp} for {key}")  # pragma: no cover


def _tuple(tp: Any, value: Any, key: str, strings: bool) -> tuple:
    if strings and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected a list, got {value!r}", key)
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif len(args) != len(value):
        raise ConfigError(f"expected a list of {len(args)} values, got {value!r}", key)
    return tuple(convert(a, v, f"{key}[{i}]", strings) for i, (a, v) in enumerate(zip(args, value)))


def check_limits(meta: Mapping[str, Any], value: Any, key: str) -> None:
    """Finite numbers, the field's limits and choices (item by item for lists)."""
    if meta.get("nonempty") and isinstance(value, (str, tuple)) and not value:
        raise ConfigError("must not be empty", key)
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            check_limits({**meta, "nonempty": False}, item, f"{key}[{i}]")
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{value!r} is not one of {', '.join(map(repr, choices))}", key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if math.isnan(value) or (math.isinf(value) and not meta.get("allow_inf")):
        raise ConfigError(f"expected a finite number, got {value!r}", key)
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    lo, hi, gt, lt = (meta.get(k) for k in _LIMITS)
    if lo is not None and value < lo:
        raise ConfigError(f"{value}{unit} is below the minimum {lo}{unit}", key)
    if hi is not None and value > hi:
        raise ConfigError(f"{value}{unit} is above the maximum {hi}{unit}", key)
    if gt is not None and not value > gt:
        raise ConfigError(f"must be > {gt}{unit}, got {value}{unit}", key)
    if lt is not None and not value < lt:
        raise ConfigError(f"must be < {lt}{unit}, got {value}{unit}", key)


def check(obj: Any, key: str = "") -> None:
    """Re-check every field of a dataclass built in code (e.g. changed by command-line flags)."""
    for name, f in loadable_fields(type(obj)).items():
        value, where = getattr(obj, name), join(key, name)
        if dataclasses.is_dataclass(value):
            check(value, where)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                check(item, f"{where}[{i}]")
        else:
            check_limits(limits(f), value, where)


def as_table(obj: Any) -> dict[str, Any]:
    """The loadable fields of a dataclass as a TOML-like dict (tuples as lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return as_table(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {name: plain(getattr(obj, name)) for name in loadable_fields(type(obj))}
