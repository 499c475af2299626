"""MEM: resident size of ``agetdaq run`` over a long run at the GbE line rate: it must not grow.

The BEC emulator (own process) sends full-readout events with the trigger above what the line
carries (paced at the line rate, credit 256 / 32 frames); ``agetdaq run`` runs as a process of its
own with the default settings (raw datagrams recorded, monitoring stream published) and its VmRSS
is read from /proc after 1 and after 10 minutes (quick mode: 10 s and 30 s). The run file is
deleted afterwards. Row: RSS at the end / RSS at the first mark (target <= 1.05: no growth).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.b6_end_to_end import FULL_SCRIPT
from benchmarks.common import make_row
from benchmarks.daqrun import EmulatorProcess, rss_mb

ID = "MEM"
TARGET_GROWTH = 1.05


def measure(first_s: float, last_s: float, work: Path) -> dict[str, Any]:
    script = work / "full.txt"
    script.write_text(FULL_SCRIPT.format(window=256, threshold=32, limit=0))
    with EmulatorProcess(seed=3, bank=64) as emu:
        cmd = [
            sys.executable, "-m", "agetdaq", "run", "--board", emu.bec, "--data-dir", str(work),
            "--script", str(script), "--seconds", str(last_s + 30), "--output",
            str(work / "mem.h5"), "--publish", "tcp://127.0.0.1:*",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        samples: list[tuple[float, float]] = []
        try:
            while time.monotonic() - t0 < last_s and proc.poll() is None:
                time.sleep(1.0)
                samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
        finally:
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        size = (work / "mem.h5").stat().st_size if (work / "mem.h5").exists() else 0
    if not samples or samples[-1][0] < last_s - 2:
        raise RuntimeError(f"agetdaq run ended early: {err[-2000:]}")
    first = min(samples, key=lambda s: abs(s[0] - first_s))[1]
    return {"first": first, "last": samples[-1][1], "peak": max(r for _, r in samples),
            "file_mb": size / 1e6, "samples": samples}  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    first_s, last_s = (10.0, 30.0) if quick else (60.0, 600.0)
    first_s = float(os.environ.get("MEM_FIRST_S", first_s))
    last_s = float(os.environ.get("MEM_LAST_S", last_s))
    with tempfile.TemporaryDirectory(prefix="mem-") as tmp:
        r = measure(first_s, last_s, Path(tmp))
    print(
        f"MEM: agetdaq run RSS {r['first']:.0f} MB at {first_s:.0f} s, {r['last']:.0f} MB at "
        f"{last_s:.0f} s, peak {r['peak']:.0f} MB; run file {r['file_mb']:.0f} MB"
    )
    step = max(1, len(r["samples"]) // 12)
    print("MEM: RSS (s, MB): " + ", ".join(f"{t:.0f} {m:.0f}" for t, m in r["samples"][::step]))
    return [
        make_row(ID, f"agetdaq run RSS at {first_s:.0f} s", r["first"], "MB"),
        make_row(ID, f"agetdaq run RSS at {last_s:.0f} s / at {first_s:.0f} s", r["last"], "MB",
                 reference=r["first"], ref_unit=f"MB at {first_s:.0f} s", target=TARGET_GROWTH,
                 higher_is_better=False),
        make_row(ID, "agetdaq run RSS peak", r["peak"], "MB"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
