"""The one settings loader (readout/config.py): kinds, limits, unknown keys, errors naming
file, key and reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agetdaq.readout.config import (
    ConfigError,
    build,
    check,
    in_file,
    load,
    load_table,
    setting,
)


@dataclass(frozen=True)
class Inner:
    width: int = setting(4, lo=1, hi=16)
    mode: str = setting("a", choices=("a", "b"))


@dataclass(frozen=True)
class Outer:
    period_s: float = setting(1.0, gt=0.0, hi=60.0, unit="s")
    limit: float = setting(math.inf, gt=0.0)  # an infinite default accepts inf
    enabled: bool = True
    label: str = setting("x", nonempty=True)
    times: tuple[float, ...] = setting((), lo=0.0)
    pair: tuple[int, int] = (1, 2)
    codes: tuple[int, ...] = setting((1,), choices=(0, 1, 2))
    ref: str | float = "median"
    inner: Inner = field(default_factory=Inner)
    items: tuple[Inner, ...] = ()
    raw: dict = field(default_factory=dict)
    hidden: str = setting("", load=False)


def error(data: dict, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(Outer, data, **kw)
    return info.value


def test_defaults_and_values_of_every_kind() -> None:
    assert build(Outer, {}) == Outer()
    o = build(
        Outer,
        {
            "period_s": 2,  # an int is a float
            "limit": math.inf,
            "enabled": False,
            "times": [3, 1.5],
            "pair": [5, 6],
            "codes": [0, 2],
            "ref": 1.25,
            "inner": {"width": 8},
            "items": [{"mode": "b"}, {}],
            "raw": {"anything": [1, 2]},
        },
    )
    assert o.period_s == 2.0 and isinstance(o.period_s, float) and o.limit == math.inf
    assert (o.enabled, o.times, o.pair, o.codes, o.ref) == (False, (3.0, 1.5), (5, 6), (0, 2), 1.25)
    assert o.inner == Inner(width=8) and o.items == (Inner(mode="b"), Inner())
    assert o.raw == {"anything": [1, 2]}
    assert build(Outer, {"ref": "mean"}).ref == "mean"


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        ({"nosuch": 1}, "nosuch", "unknown key (known: period_s, limit,"),
        ({"hidden": "x"}, "hidden", "unknown key"),
        ({"inner": {"widht": 3}}, "inner.widht", "unknown key (known: width, mode)"),
        ({"period_s": "fast"}, "period_s", "expected a number, got 'fast'"),
        ({"period_s": True}, "period_s", "expected a number, got True"),
        ({"period_s": math.nan}, "period_s", "expected a finite number, got nan"),
        ({"period_s": math.inf}, "period_s", "expected a finite number, got inf"),
        ({"period_s": -1.0}, "period_s", "must be > 0.0 s, got -1.0 s"),
        ({"period_s": 0.0}, "period_s", "must be > 0.0 s, got 0.0 s"),
        ({"period_s": 61}, "period_s", "61.0 s is above the maximum 60.0 s"),
        ({"limit": math.nan}, "limit", "expected a finite number, got nan"),
        ({"limit": -math.inf}, "limit", "must be > 0.0, got -inf"),
        ({"enabled": 1}, "enabled", "expected true or false, got 1"),
        ({"label": ""}, "label", "must not be empty"),
        ({"label": 3}, "label", "expected a string, got 3"),
        ({"times": [1.0, -2.0]}, "times[1]", "-2.0 is below the minimum 0.0"),
        ({"times": 5.0}, "times", "expected a list, got 5.0"),
        ({"pair": [1]}, "pair", "expected a list of 2 values, got [1]"),
        ({"pair": [1, 2.5]}, "pair[1]", "expected an integer, got 2.5"),
        ({"codes": [1, 7]}, "codes[1]", "7 is not one of 0, 1, 2"),
        ({"inner": {"width": 0}}, "inner.width", "0 is below the minimum 1"),
        ({"inner": {"mode": "c"}}, "inner.mode", "'c' is not one of 'a', 'b'"),
        ({"inner": 3}, "inner", "expected a table, got 3"),
        ({"items": [{}, {"width": 99}]}, "items[1].width", "99 is above the maximum 16"),
        ({"raw": 1}, "raw", "expected a table, got 1"),
        ({"ref": [1]}, "ref", "expected a number, got [1]"),
    ],
)
def test_bad_values_name_the_key_and_the_reason(data: dict, key: str, reason: str) -> None:
    exc = error(data)
    assert exc.key == key and exc.reason.startswith(reason)
    assert str(exc) == f"{key}: {exc.reason}"


def test_the_table_key_and_the_file_prefix_the_message(tmp_path: Path) -> None:
    exc = error({"inner": {"width": 0}}, key="section")
    assert exc.key == "section.inner.width"
    path = tmp_path / "s.toml"
    path.write_text("[section.inner]\nwidth = 0\n")
    with pytest.raises(ConfigError) as info:
        load(Outer, path, "section")
    assert (info.value.file, info.value.key) == (str(path), "section.inner.width")
    assert str(info.value) == f"{path}: section.inner.width: 0 is below the minimum 1"


def test_files_that_cannot_be_used(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read settings: No such file"):
        load(Outer, tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("period_s = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load(Outer, bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bad\.toml: cannot read settings"):
        load(Outer, bad)
    with pytest.raises(ConfigError, match=r"<text>: section: expected a table, got 3"):
        load_table("section = 3", "section")


def test_sources_path_text_or_dict(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text("[a.b]\nperiod_s = 5\n")
    for source in (path, str(path), path.read_text(), {"a": {"b": {"period_s": 5}}}):
        assert load(Outer, source, "a.b").period_s == 5.0
    assert load(Outer, "", "a.b") == Outer()  # a missing table: the defaults


def test_text_values_of_command_line_flags() -> None:
    o = build(
        Outer,
        {"period_s": "2.5", "enabled": "off", "times": "4, 1", "pair": "3,0x10"},
        strings=True,
    )
    assert (o.period_s, o.enabled, o.times, o.pair) == (2.5, False, (4.0, 1.0), (3, 16))
    with pytest.raises(ConfigError, match="enabled: expected true or false, got 'maybe'"):
        build(Outer, {"enabled": "maybe"}, strings=True)
    with pytest.raises(ConfigError, match="period_s: expected a finite number"):
        build(Outer, {"period_s": "nan"}, strings=True)
    with pytest.raises(ConfigError, match="period_s: expected a number"):
        build(Outer, {"period_s": "2.5"})  # text only where flags are parsed


def test_changes_on_a_base_and_required_keys() -> None:
    base = build(Outer, {"period_s": 3.0})
    assert build(Outer, {"label": "y"}, base=base) == Outer(period_s=3.0, label="y")

    @dataclass(frozen=True)
    class Named:
        name: str = setting(nonempty=True)
        value: float = 0.0

    assert build(Named, {"name": "n"}).name == "n"
    with pytest.raises(ConfigError) as info:
        build(Named, {"value": 1.0}, "t")
    assert str(info.value) == "t.name: missing (required)"


def test_post_init_errors_are_placed_in_their_table() -> None:
    @dataclass(frozen=True)
    class Window:
        lo: int = 0
        hi: int = 10

        def __post_init__(self) -> None:
            if self.lo >= self.hi:
                raise ConfigError(f"must be below hi ({self.hi})", "lo")
            if self.hi > 100:
                raise ValueError("too wide")

    with pytest.raises(ConfigError) as info:
        build(Window, {"lo": 20}, "w")
    assert str(info.value) == "w.lo: must be below hi (10)"
    with pytest.raises(ConfigError) as info:
        build(Window, {"hi": 200}, "w")
    assert str(info.value) == "w: too wide"


def test_check_recomputes_the_limits_of_an_object_built_in_code() -> None:
    check(Outer(inner=Inner(width=3)))
    with pytest.raises(ConfigError) as info, in_file("cli"):
        check(Outer(inner=Inner(width=99)))
    assert str(info.value) == "cli: inner.width: 99 is above the maximum 16"


def test_adding_a_setting_is_one_field() -> None:
    @dataclass(frozen=True)
    class Grown(Outer):
        new_timeout_s: float = setting(2.0, gt=0.0, hi=10.0)

    assert build(Grown, {"new_timeout_s": 3}).new_timeout_s == 3.0
    with pytest.raises(ConfigError) as info:
        build(Grown, {"new_timeout_s": -1})
    assert str(info.value) == "new_timeout_s: must be > 0.0, got -1.0"
