"""Run numbers and the append-only run log of a data directory.

``<data_dir>/runlog.jsonl`` holds one JSON object per line: an ``allocate`` record when a run
number is taken, a ``start`` record when the run begins and an ``end`` record when it ends. The
next run number is one more than the largest ever used, in the log or in a run file name of the
directory, so numbers are never reused even if a run file or the log is deleted. Several
processes may share a data directory (two ``agetdaq serve``, a ``serve`` and a ``run``): a
number is taken and recorded under an exclusive lock of the log (``flock``), so no two runs
ever get the same number.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path

RUN_LOG = "runlog.jsonl"
_RUN_FILE = re.compile(r"R(\d+)_.*\.h5$")


class RunLog:
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / RUN_LOG

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return _parse(self.path.read_bytes())

    def next_run_number(self) -> int:
        """The number the next run would get (nothing is taken: see allocate_run_number)."""
        return self._next(self.records())

    def _next(self, records: list[dict]) -> int:
        numbers = []
        for r in records:
            try:
                numbers.append(int(r.get("run", 0)))
            except (TypeError, ValueError):
                continue
        try:
            names = os.listdir(self.data_dir)
        except OSError:
            names = []
        numbers += [int(m.group(1)) for m in map(_RUN_FILE.match, names) if m]
        return max(numbers, default=0) + 1

    def allocate_run_number(self) -> int:
        """Take the next run number for this process: read, decide and record it while holding
        the log's lock, so that concurrent processes never take the same number."""
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file closes
            f.seek(0)
            number = self._next(_parse(f.read()))
            self._write(f, {"event": "allocate", "run": number, "pid": os.getpid()})
        return number

    def run_path(self, run: int, run_type: str) -> Path:
        """File of a run inside the data directory: R00012_background.h5."""
        return self.data_dir / f"R{run:05d}_{run_type}.h5"

    def append(self, record: dict) -> None:
        with open(self.path, "ab") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            self._write(f, record)

    @staticmethod
    def _write(f, record: dict) -> None:
        record = {"time": time.time(), **record}
        f.write((json.dumps(record, default=str) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def _parse(data: bytes) -> list[dict]:
    out = []
    for line in data.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash; the rest of the log stays valid
        if isinstance(record, dict):
            out.append(record)
    return out


def confine(data_dir: str | Path, name: str) -> Path:
    """A path from a control message, confined to the data directory (ValueError otherwise)."""
    base = Path(data_dir).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"path {name!r} leaves the data directory {base}")
    return target
