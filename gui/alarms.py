"""Alarm rules and their evaluation (pure Python, no Qt).

A rule watches one metric (a number the model computes, see ``StreamModel.metrics``) and names its
allowed range ``[min, max]``. When the value leaves the range for ``delay_s`` the alarm fires; it
stays active until the value is back in range; an operator acknowledges it (the sound stops, the
banner keeps its colour until it clears). A missing metric (None / NaN) never fires. Rules load
from TOML: an array of tables ``[[rule]]`` (see gui/data/alarms.toml), through the one settings
loader (:mod:`agetdaq.readout.config`): errors read ``file: rule[i].key: reason``.
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
    delay_s: float = setting(0.0, "out of range this long before firing", lo=0.0, unit="s")
    severity: str = setting("warning", choices=SEVERITIES)
    message: str = setting("", "banner text; may use {value}")
    states: tuple[str, ...] = setting(
        (), "run states in which it applies; empty: always", choices=STATES
    )

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ConfigError("give min and/or max", "max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"min {self.min} is above max {self.max}", "min")

    def violated(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        )

    def describe(self, value: float | None) -> str:
        text = self.message or f"{self.metric} out of range"
        try:
            return text.format(value=value if value is not None else float("nan"), rule=self)
        except (KeyError, ValueError, IndexError):
            return text


@dataclass
class Alarm:
    """A rule whose condition holds; ``fired`` once it held for the rule's delay."""

    rule: Rule
    since: float
    value: float | None
    fired_at: float | None = None
    acknowledged: bool = False

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    @property
    def text(self) -> str:
        return self.rule.describe(self.value)


@dataclass(frozen=True)
class AlarmEvent:
    time: float
    kind: str  # "fired", "cleared", "acknowledged"
    rule: str
    severity: str
    text: str


@dataclass
class AlarmEngine:
    rules: list[Rule]
    history_size: int = 1000
    pending: dict[str, Alarm] = field(default_factory=dict)  # condition true, fired or not
    history: deque[AlarmEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)

    def evaluate(
        self, metrics: Mapping[str, float | None], now: float, state: str | None = None
    ) -> list[Alarm]:
        """Update every rule with the current metrics; returns the alarms that fired now."""
        fired: list[Alarm] = []
        for rule in self.rules:
            applies = not rule.states or state in rule.states
            value = metrics.get(rule.metric)
            alarm = self.pending.get(rule.name)
            if applies and rule.violated(value):
                if alarm is None:
                    alarm = self.pending[rule.name] = Alarm(rule, now, value)
                alarm.value = value
                if not alarm.fired and now - alarm.since >= rule.delay_s:
                    alarm.fired_at = now
                    fired.append(alarm)
                    self._log(now, "fired", alarm)
            elif alarm is not None:
                del self.pending[rule.name]
                if alarm.fired:
                    self._log(now, "cleared", alarm)
        return fired

    def _log(self, now: float, kind: str, alarm: Alarm) -> None:
        self.history.append(AlarmEvent(now, kind, alarm.rule.name, alarm.rule.severity, alarm.text))

    @property
    def active(self) -> list[Alarm]:
        """Fired alarms whose condition still holds, the most severe first."""
        out = [a for a in self.pending.values() if a.fired]
        return sorted(out, key=lambda a: (-severity_rank(a.rule.severity), a.fired_at))

    def acknowledge(self, name: str | None = None, now: float = 0.0) -> int:
        """Acknowledge one active alarm (or all with ``name=None``); returns how many."""
        n = 0
        for alarm in self.active:
            if (name is None or alarm.rule.name == name) and not alarm.acknowledged:
                alarm.acknowledged = True
                self._log(now, "acknowledged", alarm)
                n += 1
        return n

    def worst(self, unacknowledged_only: bool = False) -> str | None:
        """Highest severity among the active alarms, or None."""
        sev = [a.rule.severity for a in self.active if not (unacknowledged_only and a.acknowledged)]
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
