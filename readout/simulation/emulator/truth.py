"""Truth side file: one JSON line per event the card read out, keyed by its event counter.

Each line holds ``event_count``, ``timestamp`` (card ticks of 20 ns), ``event_type``,
``trigger_time_s`` (emulator time of the trigger), ``bank`` (index of the pre-generated event that
was replayed, or null for an event generated in real time) and what the physics model generated
(kind, energy, line, position, strips and amplitudes, ...). The event counter restarts after
``clr evcnt`` or an emulated reboot; readers that need uniqueness use the line order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def _default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fragment(truth: dict) -> str:
    """The physics truth as the inside of a JSON object (no braces), for fast line assembly."""
    body = {k: v for k, v in truth.items() if k not in ("event_count", "timestamp", "bank")}
    text = json.dumps(body, default=_default, separators=(",", ":"))
    return text[1:-1]


class TruthWriter:
    """Appends truth lines to a JSONL file (buffered; flushed on close and every N lines)."""

    def __init__(self, path: str | Path, flush_every: int = 1000) -> None:
        self.path = Path(path)
        self._f: TextIO = self.path.open("w", encoding="utf-8")
        self._flush_every = flush_every
        self.lines = 0

    def write(
        self,
        event_count: int,
        timestamp: int,
        event_type: int,
        trigger_time_s: float,
        frag: str,
        bank: int | None = None,
    ) -> None:
        head = (
            f'{{"event_count":{event_count},"timestamp":{timestamp},"event_type":{event_type},'
            f'"trigger_time_s":{trigger_time_s:.9f},"bank":{"null" if bank is None else bank}'
        )
        self._f.write(f"{head},{frag}}}\n" if frag else f"{head}}}\n")
        self.lines += 1
        if self.lines % self._flush_every == 0:
            self._f.flush()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_truth(path: str | Path) -> list[dict]:
    """All truth lines of a file, in order."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
