"""Fault injection on the emulated card's network side; every injected fault is counted.

Configured from a scenario's ``[faults]`` table, ``--fault key=value`` flags or the emulator
command ``emu fault key=value``. Keys (probabilities are per data datagram, 0..1):

=============  =====================================================================
drop           lose the datagram
duplicate      send it twice
reorder        hold it back and send it after the next one
truncate       cut it to a random shorter length (at least the lead word)
flip           flip one random bit of the frame (the lead word is kept)
delay          hold it back ``delay_ms`` (default 50) before sending
silence_at     list of times (s since start) at which the card stops answering for
               ``silence_s`` (default 2): commands ignored, no data sent
reboot_at      list of times at which the card "reboots": sequence numbers, credits,
               event counter and timestamp restart, pending data is lost
burst          1 = no GbE line-rate pacing, no dead time, events as fast as the bank goes
burst_at       list of times at which burst mode starts for ``burst_s`` (default 1) s
seed           random seed of the injector
=============  =====================================================================
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from agetdaq.readout.config import ConfigError, build, setting

PROB_KEYS = ("drop", "duplicate", "reorder", "truncate", "flip", "delay")
COUNTER_NAMES = (*PROB_KEYS, "silence", "ignored_commands", "reboot", "burst")
MAX_HOLD_S = 3600.0


def _probability(doc: str) -> float:
    return setting(0.0, doc + " (per data datagram)", lo=0.0, hi=1.0)


def _times(doc: str) -> tuple[float, ...]:
    return setting((), doc, lo=0.0, unit="s")


@dataclass(frozen=True)
class FaultConfig:
    """The faults to inject; a scenario's ``[faults]`` table or ``key=value`` flags."""

    drop: float = _probability("lose the datagram")
    duplicate: float = _probability("send it twice")
    reorder: float = _probability("send it after the next one")
    truncate: float = _probability("cut it short")
    flip: float = _probability("flip one bit")
    delay: float = _probability("hold it back delay_ms")
    delay_ms: float = setting(50.0, lo=0.0, hi=MAX_HOLD_S * 1000.0, unit="ms")
    silence_at: tuple[float, ...] = _times("times at which the card stops answering")
    silence_s: float = setting(2.0, lo=0.0, hi=MAX_HOLD_S, unit="s")
    reboot_at: tuple[float, ...] = _times("times at which the card reboots")
    burst: bool = setting(False, "no line-rate pacing, no dead time")
    burst_at: tuple[float, ...] = _times("times at which burst mode starts")
    burst_s: float = setting(1.0, lo=0.0, hi=MAX_HOLD_S, unit="s")
    seed: int = setting(0, "random seed of the injector", lo=0)

    def __post_init__(self) -> None:
        for key in ("silence_at", "reboot_at", "burst_at"):
            object.__setattr__(self, key, tuple(sorted(getattr(self, key))))

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], key: str = "faults") -> FaultConfig:
        """From a table or ``key=value`` flags (values may be text); ConfigError naming the key."""
        return build(cls, data, key, strings=True)

    def updated(self, data: Mapping[str, object], key: str = "fault") -> FaultConfig:
        """A copy with the keys of ``data`` changed (checked like :meth:`from_mapping`)."""
        return build(FaultConfig, data, key, base=self, strings=True)

    def any_data_fault(self) -> bool:
        return any(getattr(self, k) > 0 for k in PROB_KEYS)


def parse_fault_args(items: Iterable[str]) -> dict[str, str]:
    """``["drop=0.01", "silence_at=5,20"]`` -> ``{"drop": "0.01", "silence_at": "5,20"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{item!r} is not key=value", "fault")
        out[key.strip()] = value.strip()
    return out


@dataclass
class FaultInjector:
    """Applies the data faults to outgoing datagrams and schedules the timed ones."""

    config: FaultConfig = field(default_factory=FaultConfig)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.config.seed)
        self._held: bytes | None = None  # reorder
        self._delayed: list[tuple[float, int, bytes]] = []
        self._n = 0
        self.silent_until = 0.0
        self.burst_until = 0.0
        self._timed: list[tuple[float, str]] = []
        self.schedule(0.0)

    def schedule(self, start: float) -> None:
        """(Re)build the timed faults relative to ``start`` (monotonic seconds of the start)."""
        cfg = self.config
        self._timed = sorted(
            [(start + t, "silence") for t in cfg.silence_at]
            + [(start + t, "reboot") for t in cfg.reboot_at]
            + [(start + t, "burst") for t in cfg.burst_at]
        )

    def update(self, data: Mapping[str, object]) -> None:
        """Change faults while running (``emu fault key=value``)."""
        self.config = self.config.updated(data)

    def set_burst(self, on: bool) -> None:
        self.config = replace(self.config, burst=on)
        self.counts["burst"] += on

    @property
    def active(self) -> bool:
        return self.config.any_data_fault() or self._held is not None or bool(self._delayed)

    def burst(self, now: float) -> bool:
        return self.config.burst or now < self.burst_until

    def silent(self, now: float) -> bool:
        return now < self.silent_until

    def start_silence(self, now: float, seconds: float) -> None:
        self.silent_until = max(self.silent_until, now + seconds)
        self.counts["silence"] += 1

    def start_burst(self, now: float, seconds: float) -> None:
        self.burst_until = max(self.burst_until, now + seconds)
        self.counts["burst"] += 1

    def due_timed(self, now: float) -> list[str]:
        """Timed faults whose time has come ('silence' and 'burst' are applied here;
        'reboot' is returned for the server to carry out)."""
        out = []
        while self._timed and self._timed[0][0] <= now:
            _, kind = self._timed.pop(0)
            if kind == "silence":
                self.start_silence(now, self.config.silence_s)
            elif kind == "burst":
                self.start_burst(now, self.config.burst_s)
            else:
                self.counts["reboot"] += 1
            out.append(kind)
        return out

    def next_deadline(self) -> float | None:
        times = [t for t, _ in self._timed[:1]] + [t for t, _, _ in self._delayed[:1]]
        return min(times) if times else None

    def process(self, payload: bytes, now: float) -> list[bytes]:
        """Datagrams to send now in place of ``payload`` (maybe none, maybe several)."""
        cfg = self.config
        r = self._rng.random(6)
        if r[0] < cfg.drop:
            self.counts["drop"] += 1
            return []
        if r[3] < cfg.truncate and len(payload) > 2:
            self.counts["truncate"] += 1
            payload = payload[: int(self._rng.integers(2, len(payload)))]
        if r[4] < cfg.flip and len(payload) > 2:
            self.counts["flip"] += 1
            buf = bytearray(payload)
            pos = int(self._rng.integers(2, len(buf)))
            buf[pos] ^= 1 << int(self._rng.integers(0, 8))
            payload = bytes(buf)
        if r[5] < cfg.delay:
            self.counts["delay"] += 1
            self._n += 1
            heapq.heappush(self._delayed, (now + cfg.delay_ms / 1000.0, self._n, payload))
            return []
        out = [payload]
        if r[1] < cfg.duplicate:
            self.counts["duplicate"] += 1
            out.append(payload)
        if self._held is not None:
            out.extend([self._held])
            self._held = None
        elif r[2] < cfg.reorder:
            self.counts["reorder"] += 1
            self._held = payload
            out = out[1:]
        return out

    def due_delayed(self, now: float) -> list[bytes]:
        """Delayed datagrams whose time has come (plus a reordered one left waiting)."""
        out = []
        while self._delayed and self._delayed[0][0] <= now:
            out.append(heapq.heappop(self._delayed)[2])
        return out

    def flush_held(self) -> list[bytes]:
        """A datagram held back for reordering when nothing followed it."""
        held, self._held = self._held, None
        return [held] if held is not None else []

    def summary(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.counts.items())
