"""Alarm rules and their evaluation (pure Python, no Qt).

A rule watches one metric (a number the model computes, see ``StreamModel.metrics``) and names its
allowed range ``[min, max]`` (leaving it: the rule's ``severity``) and optionally a wider range
``[alarm_min, alarm_max]`` (leaving that: "alarm"). One cause, one alarm: when the value goes on
to the wider limits the same alarm escalates to "alarm" (and needs a new acknowledgement). An alarm
fires once its condition held for ``delay_s`` and latches: it stays active until the condition is
gone AND an operator acknowledged it (acknowledging stops the sound; the banner keeps the colour of
the worst level the alarm reached until it is gone and acknowledged). A missing metric (None /
NaN) never fires. ``deadband`` is the rule's hysteresis: a fired alarm clears only once the value
is that far back inside its range, so a value that hovers at a limit does not fire and clear in
turn. Rules load from TOML: an array of tables ``[[rule]]`` (see
gui/data/alarms.toml), through the one settings loader (:mod:`agetdaq.readout.config`): errors
read ``file: rule[i].key: reason``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from agetdaq.gui.runstate import STATES
from agetdaq.readout.config import ConfigError, build, in_file, parse_toml, read_text, setting

SEVERITIES = ("warning", "alarm")  # increasing
SHIPPED = "gui/data/alarms.toml"


def severity_rank(severity: str | None) -> int:
    """0 for none, 1 warning, 2 alarm."""
    return 0 if severity is None else SEVERITIES.index(severity) + 1


@dataclass(frozen=True)
class Rule:
    name: str = setting(doc="unique name of the rule", nonempty=True)
    metric: str = setting(doc="a metric of StreamModel.metrics", nonempty=True)
    min: float | None = setting(None, "lowest allowed value")
    max: float | None = setting(None, "highest allowed value")
    alarm_min: float | None = setting(None, "below this the alarm escalates to 'alarm'")
    alarm_max: float | None = setting(None, "above this the alarm escalates to 'alarm'")
    delay_s: float = setting(0.0, "out of range this long before firing", lo=0.0, unit="s")
    deadband: float = setting(
        0.0, "a fired alarm clears only this far inside the range (hysteresis)", lo=0.0
    )
    severity: str = setting("warning", choices=SEVERITIES)
    message: str = setting("", "banner text; may use {value}")
    states: tuple[str, ...] = setting(
        (), "run states in which it applies; empty: always", choices=STATES
    )

    def __post_init__(self) -> None:
        if all(v is None for v in (self.min, self.max, self.alarm_min, self.alarm_max)):
            raise ConfigError("give min and/or max", "max")
        for a, b in (("min", "max"), ("alarm_min", "alarm_max"), ("alarm_min", "min"),
                     ("max", "alarm_max")):  # fmt: skip
            lo, hi = getattr(self, a), getattr(self, b)
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(f"{a} {lo} is above {b} {hi}", a)
        span = None if self.min is None or self.max is None else self.max - self.min
        if span is not None and 2 * self.deadband >= span:
            raise ConfigError(
                f"deadband {self.deadband} leaves nothing of the range {self.min} .. {self.max}",
                "deadband",
            )

    def level(self, value: float | None, holding: bool = False) -> str | None:
        """The severity ``value`` calls for: None (in range), the rule's, or "alarm". While an
        alarm holds (``holding``) its range is narrower by the deadband."""
        if value is None or not math.isfinite(value):
            return None
        if _outside(value, self.alarm_min, self.alarm_max):
            return "alarm"
        band = self.deadband if holding else 0.0
        lo = None if self.min is None else self.min + band
        hi = None if self.max is None else self.max - band
        return self.severity if _outside(value, lo, hi) else None

    def violated(self, value: float | None) -> bool:
        return self.level(value) is not None

    def describe(self, value: float | None) -> str:
        text = self.message or f"{self.metric} out of range"
        try:
            return text.format(value=value if value is not None else float("nan"), rule=self)
        except (KeyError, ValueError, IndexError):
            return text


def _outside(value: float, lo: float | None, hi: float | None) -> bool:
    return (lo is not None and value < lo) or (hi is not None and value > hi)


@dataclass
class Alarm:
    """One rule's alarm: ``fired`` once its condition held for the rule's delay; ``holding``
    while the condition holds; ``severity`` the worst level reached (it latches)."""

    rule: Rule
    since: float
    value: float | None
    severity: str = "warning"
    fired_at: float | None = None
    acknowledged: bool = False
    holding: bool = True
    cleared_at: float | None = None

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    @property
    def text(self) -> str:
        text = self.rule.describe(self.value)
        return text if self.holding else f"{text} (gone, acknowledge)"


@dataclass(frozen=True)
class AlarmEvent:
    time: float
    kind: str  # "fired", "escalated", "cleared", "acknowledged"
    rule: str
    severity: str
    text: str


@dataclass
class AlarmEngine:
    rules: list[Rule]
    history_size: int = 1000
    pending: dict[str, Alarm] = field(default_factory=dict)  # condition true, or latched
    history: deque[AlarmEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)

    def evaluate(
        self, metrics: Mapping[str, float | None], now: float, state: str | None = None
    ) -> list[Alarm]:
        """Update every rule with the current metrics; returns the alarms that fired or
        escalated now (they call for the operator)."""
        called: list[Alarm] = []
        for rule in self.rules:
            applies = not rule.states or state in rule.states
            value = metrics.get(rule.metric)
            alarm = self.pending.get(rule.name)
            holding = alarm is not None and alarm.fired and alarm.holding
            level = rule.level(value, holding) if applies else None
            if level is not None:
                if alarm is None:
                    alarm = self.pending[rule.name] = Alarm(rule, now, value, level)
                alarm.value, alarm.holding, alarm.cleared_at = value, True, None
                if not alarm.fired:
                    alarm.severity = max(alarm.severity, level, key=severity_rank)
                    if now - alarm.since >= rule.delay_s:
                        alarm.fired_at = now
                        called.append(alarm)
                        self._log(now, "fired", alarm)
                elif severity_rank(level) > severity_rank(alarm.severity):
                    alarm.severity, alarm.acknowledged = level, False
                    called.append(alarm)
                    self._log(now, "escalated", alarm)
            elif alarm is not None:
                if not alarm.fired:
                    del self.pending[rule.name]
                elif alarm.holding:
                    alarm.holding, alarm.cleared_at = False, now
                    self._log(now, "cleared", alarm)
                    if alarm.acknowledged:
                        del self.pending[rule.name]
        return called

    def _log(self, now: float, kind: str, alarm: Alarm) -> None:
        self.history.append(AlarmEvent(now, kind, alarm.rule.name, alarm.severity, alarm.text))

    @property
    def active(self) -> list[Alarm]:
        """Fired alarms whose condition holds or that wait for an acknowledgement, the most
        severe first."""
        out = [a for a in self.pending.values() if a.fired]
        return sorted(out, key=lambda a: (-severity_rank(a.severity), a.fired_at))

    def acknowledge(self, name: str | None = None, now: float = 0.0) -> int:
        """Acknowledge one active alarm (or all with ``name=None``); returns how many. An
        acknowledged alarm whose condition is gone is over."""
        n = 0
        for alarm in self.active:
            if (name is None or alarm.rule.name == name) and not alarm.acknowledged:
                alarm.acknowledged = True
                self._log(now, "acknowledged", alarm)
                if not alarm.holding:
                    del self.pending[alarm.rule.name]
                n += 1
        return n

    def worst(self, unacknowledged_only: bool = False) -> str | None:
        """Highest severity among the active alarms, or None."""
        sev = [a.severity for a in self.active if not (unacknowledged_only and a.acknowledged)]
        return max(sev, key=severity_rank) if sev else None


@dataclass(frozen=True)
class RuleFile:
    """A rules file: ``[[rule]]`` tables and nothing else."""

    rule: tuple[Rule, ...] = ()


def rules_from_text(text: str, source: str = "<text>") -> list[Rule]:
    """Parse ``[[rule]]`` tables; ConfigError ``source: rule[i].key: reason (rule 'name')``."""
    with in_file(source):
        data = parse_toml(text, source)
        try:
            rules = list(build(RuleFile, data).rule)
        except ConfigError as exc:
            raise _named(exc, data) from None
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate rule name(s) {dupes}", "rule")
    return rules


def _named(exc: ConfigError, data: dict) -> ConfigError:
    """The error with the name of the rule it is about, when the rule has one."""
    head = exc.key.split(".", 1)[0]
    if not head.startswith("rule[") or not isinstance(data.get("rule"), list):
        return exc
    index = int(head[5:-1])
    name = data["rule"][index].get("name") if isinstance(data["rule"][index], dict) else None
    if not isinstance(name, str) or not name:
        return exc
    return ConfigError(f"{exc.reason} (rule {name!r})", exc.key, exc.file)


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """Rules of ``path``, or the shipped defaults (gui/data/alarms.toml)."""
    if path is None:
        ref = resources.files("agetdaq.gui").joinpath("data", "alarms.toml")
        return rules_from_text(ref.read_text(encoding="utf-8"), SHIPPED)
    return rules_from_text(read_text(path, "alarm rules"), str(path))
