"""Helpers shared by the benchmark modules: timing, result rows, machine description."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "results.jsonl"


def best_time(fn: Callable[[], Any], repeat: int = 5, min_seconds: float = 0.0) -> float:
    """Shortest wall time of ``fn()`` over ``repeat`` runs (more runs until ``min_seconds``)."""
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    while runs < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def make_row(
    bench_id: str,
    name: str,
    value: float,
    unit: str,
    *,
    reference: float | None = None,
    ref_unit: str | None = None,
    target: float | None = None,
    target_on: str = "ratio",
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """A result row; ``target`` applies to ``value / reference`` (target_on="ratio") or value."""
    ratio = value / reference if reference else None
    subject = ratio if target_on == "ratio" else value
    met = None
    target_text = None
    if target is not None and subject is not None:
        met = subject >= target if higher_is_better else subject <= target
        target_text = f"{target_on} {'>=' if higher_is_better else '<='} {target:g}"
    return {
        "id": bench_id,
        "name": name,
        "value": value,
        "unit": unit,
        "reference": reference,
        "ref_unit": ref_unit,
        "ratio": ratio,
        "target": target_text,
        "met": met,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores and library versions, stored with every result line."""
    import numba
    import numpy

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
    }
