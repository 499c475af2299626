"""Run the benchmarks, print a table and append JSON lines to benchmarks/results/results.jsonl."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller data sets, fewer repeats")
    ap.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B3")
    ap.add_argument("--no-save", action="store_true", help="do not append to results.jsonl")
    args = ap.parse_args(argv)
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
        try:
            got = mod.run(args.quick)
        except Exception:
            traceback.print_exc()
            failed += 1
            got = [{"id": bench_id, "name": "FAILED", "value": None, "unit": None, "met": False}]
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
