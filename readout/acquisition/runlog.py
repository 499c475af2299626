"""Run numbers and the append-only run log of a data directory.

``<data_dir>/runlog.jsonl`` holds one JSON object per line: a ``start`` record when a run begins
and an ``end`` record when it ends. The next run number is one more than the largest ever used,
so numbers are never reused even if a run file is deleted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

RUN_LOG = "runlog.jsonl"


class RunLog:
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / RUN_LOG

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash; the rest of the log stays valid
        return out

    def next_run_number(self) -> int:
        numbers = [int(r.get("run", 0)) for r in self.records()]
        return max(numbers, default=0) + 1

    def run_path(self, run: int, run_type: str) -> Path:
        """File of a run inside the data directory: R00012_background.h5."""
        return self.data_dir / f"R{run:05d}_{run_type}.h5"

    def append(self, record: dict) -> None:
        record = {"time": time.time(), **record}
        line = json.dumps(record, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def confine(data_dir: str | Path, name: str) -> Path:
    """A path from a control message, confined to the data directory (ValueError otherwise)."""
    base = Path(data_dir).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"path {name!r} leaves the data directory {base}")
    return target
