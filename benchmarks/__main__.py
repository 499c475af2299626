"""Run the benchmarks, print a table and append JSON lines to benchmarks/results/results.jsonl.

Each benchmark module runs in a process of its own, in a session of its own, with a time limit
(``TIMEOUT_S`` of the module, else 900 s with --quick and 3600 s without): a benchmark that hangs
is ended with every process it started and reported FAILED, the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_PATH, machine_info

_MODULE_RE = re.compile(r"^b\d+_\w+$")
EXTRA_MODULES = ("memory", "memory_gui")  # run after the numbered ones


def discover() -> list[Any]:
    """Benchmark modules ``benchmarks/b<N>_<name>.py`` sorted by number, then EXTRA_MODULES."""
    pkg_dir = Path(__file__).resolve().parent
    names = [m.name for m in pkgutil.iter_modules([str(pkg_dir)]) if _MODULE_RE.match(m.name)]
    names.sort(key=lambda n: (int(re.match(r"b(\d+)", n).group(1)), n))
    names += [m.name for m in pkgutil.iter_modules([str(pkg_dir)]) if m.name in EXTRA_MODULES]
    return [importlib.import_module(f"benchmarks.{n}") for n in names]


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["id", "name", "value", "unit", "reference", "ref_unit", "ratio", "target", "met"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _in_child(mod: Any, quick: bool) -> tuple[list[dict[str, Any]], bool]:
    """Run one module in a process (and session) of its own within its time limit."""
    bench_id = getattr(mod, "ID", mod.__name__)
    limit = getattr(mod, "TIMEOUT_S", 900 if quick else 3600)
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as out:
        path = out.name
    cmd = [sys.executable, "-m", "benchmarks", "--child", mod.__name__, "--rows-to", path]
    cmd += ["--quick"] if quick else []
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        proc.wait(limit)
        with open(path, encoding="utf-8") as f:
            return json.load(f), proc.returncode == 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the benchmark and every process it started
        proc.wait(30)
        print(f"  {bench_id}: no result within {limit} s: ended", file=sys.stderr)
    except (OSError, ValueError):
        pass
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return [{"id": bench_id, "name": "FAILED", "value": None, "unit": None, "met": False}], False


def _child(name: str, quick: bool, rows_to: str) -> int:
    mod = importlib.import_module(name)
    ok = True
    try:
        got = mod.run(quick)
    except Exception:
        traceback.print_exc()
        ok = False
        got = [{"id": getattr(mod, "ID", name), "name": "FAILED", "value": None, "unit": None,
                "met": False}]  # fmt: skip
    with open(rows_to, "w", encoding="utf-8") as f:
        json.dump(got, f)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller data sets, fewer repeats")
    ap.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B3")
    ap.add_argument("--no-save", action="store_true", help="do not append to results.jsonl")
    ap.add_argument("--in-process", action="store_true", help="no child process, no time limit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows-to", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick, args.rows_to)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    machine = machine_info()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows: list[dict[str, Any]] = []
    failed = 0
    for mod in discover():
        bench_id = getattr(mod, "ID", mod.__name__)
        if only and bench_id.upper() not in only:
            continue
        print(f"running {bench_id} ({mod.__name__}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if args.in_process:
            try:
                got = mod.run(args.quick)
            except Exception:
                traceback.print_exc()
                failed += 1
                got = [{"id": bench_id, "name": "FAILED", "value": None, "unit": None,
                        "met": False}]  # fmt: skip
        else:
            got, ok = _in_child(mod, args.quick)
            failed += not ok
        print(f"  {bench_id} took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rows.extend(got)
    if not rows:
        print("no benchmark selected", file=sys.stderr)
        return 2
    print_table(rows)
    if not args.no_save:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS_PATH.open("a", encoding="utf-8") as f:
            for r in rows:
                line = {"timestamp": stamp, "quick": args.quick, "machine": machine, **r}
                f.write(json.dumps(line) + "\n")
        print(f"appended {len(rows)} rows to {RESULTS_PATH}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
