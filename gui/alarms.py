"""Alarm rules and their evaluation (pure Python, no Qt).

A rule watches one metric (a number the model computes, see ``StreamModel.metrics``) and names its
allowed range ``[min, max]``. When the value leaves the range for ``delay_s`` the alarm fires; it
stays active until the value is back in range; an operator acknowledges it (the sound stops, the
banner keeps its colour until it clears). A missing metric (None / NaN) never fires. Rules load
from TOML: an array of tables ``[[rule]]`` (see gui/data/alarms.toml).
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SEVERITIES = ("warning", "alarm")  # increasing
_RULE_KEYS = {"name", "metric", "min", "max", "delay_s", "severity", "message", "states"}


class RuleError(ValueError):
    """An alarm rule file that cannot be used; the message names the rule."""


def severity_rank(severity: str | None) -> int:
    """0 for none, 1 warning, 2 alarm."""
    return 0 if severity is None else SEVERITIES.index(severity) + 1


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    min: float | None = None
    max: float | None = None
    delay_s: float = 0.0
    severity: str = "warning"
    message: str = ""
    states: tuple[str, ...] = ()  # run states in which the rule applies; empty: always

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


def _rule_from_dict(d: Mapping[str, object], where: str) -> Rule:
    unknown = sorted(set(d) - _RULE_KEYS)
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {unknown}; known: {sorted(_RULE_KEYS)}")
    for key in ("name", "metric"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise RuleError(f"{where}: {key!r} must be a non-empty string")
    name = str(d["name"])
    kwargs: dict[str, object] = {"name": name, "metric": d["metric"]}
    for key in ("min", "max", "delay_s"):
        value = d.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError(f"{where} ({name}): {key} must be a number, got {value!r}")
        if key == "delay_s" and value < 0:
            raise RuleError(f"{where} ({name}): delay_s must be >= 0")
        kwargs[key] = float(value)
    if "min" not in kwargs and "max" not in kwargs:
        raise RuleError(f"{where} ({name}): give min and/or max")
    severity = d.get("severity", "warning")
    if severity not in SEVERITIES:
        raise RuleError(f"{where} ({name}): severity must be one of {SEVERITIES}")
    kwargs["severity"] = severity
    message = d.get("message", "")
    if not isinstance(message, str):
        raise RuleError(f"{where} ({name}): message must be a string")
    kwargs["message"] = message
    states = d.get("states", [])
    if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
        raise RuleError(f"{where} ({name}): states must be a list of run state names")
    kwargs["states"] = tuple(states)
    return Rule(**kwargs)  # type: ignore[arg-type]


def rules_from_text(text: str, source: str = "<text>") -> list[Rule]:
    """Parse ``[[rule]]`` tables; raises RuleError with the source and rule index."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{source}: not valid TOML: {exc}") from None
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    rules = [_rule_from_dict(t, f"{source} rule {i + 1}") for i, t in enumerate(tables)]
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuleError(f"{source}: duplicate rule name(s) {dupes}")
    return rules


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """Rules of ``path``, or the shipped defaults (gui/data/alarms.toml)."""
    if path is None:
        ref = resources.files("agetdaq.gui").joinpath("data", "alarms.toml")
        return rules_from_text(ref.read_text(encoding="utf-8"), "gui/data/alarms.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"cannot read alarm rules {path}: {exc}") from None
    return rules_from_text(text, str(path))
