"""``agetdaq inspect RUN.h5``: what a run holds, in a few lines (or JSON)."""

from __future__ import annotations

import argparse
import json

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summary of a run file")
    p.add_argument("file", help="run file (.h5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def summarise(path: str) -> dict:
    from agetdaq.readout.analysis.monitor import CLASS_NAMES
    from agetdaq.readout.store.reader import RunFile

    with RunFile(path) as f:
        meta, final, ev = f.metadata(), f.final(), f.events()
        status = f.status()
        n_dgram = f.n_datagrams
        raw_bytes = int(f.file["raw/index"]["nbytes"].sum()) if n_dgram else 0
    out: dict = {
        "file": path,
        "run_number": meta.get("run_number"),
        "run_type": meta.get("run_type"),
        "comment": meta.get("comment"),
        "start": meta.get("start_time"),
        "stop": final.get("stop_time"),
        "stop_reason": final.get("stop_reason", "file not closed (writer crashed or running)"),
        "events": len(ev),
        "datagrams": n_dgram,
        "raw_mb": raw_bytes / 1e6,
    }
    if len(ev):
        t = ev["time_ns"].astype(np.float64) / 1e9
        ticks = ev["timestamp"].astype(np.float64) * 20e-9
        duration = float(max(t[-1] - t[0], ticks[-1] - ticks[0], 0.0))
        out["duration_s"] = duration
        out["rate_hz"] = len(ev) / duration if duration > 0 else None
        counts = np.bincount(np.clip(ev["cls"].astype(int), 0, 3), minlength=4)
        out["classes"] = dict(zip(CLASS_NAMES, counts.tolist()))
        out["damaged_events"] = int((ev["flags"] != 0).sum())
        out["build_flagged"] = int(((ev["build_flags"] & 0x7FFF) != 0).sum())
        xray = ev["energy"][ev["cls"] == 1]
        if len(xray) >= 20:
            hist, edges = np.histogram(xray, bins=100)
            out["xray_peak_adc"] = float(0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1]))
    if "counters" in final:
        counters = json.loads(final["counters"])
        out["losses"] = {
            "kernel_drops": counters["receiver"].get("kernel_drops"),
            "ring_full": counters["receiver"].get("ring_full_drops"),
            "lost_datagrams": counters.get("sequence", {}).get("missing"),
            "decoder": counters.get("decoder", {}),
            "missing_events": counters["builder"].get("missing"),
            "writer_errors": counters["datapath"].get("writer_errors"),
        }
    elif status:
        out["losses"] = status[-1].get("losses", {})
    return out


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.store.reader import RunFileError

    try:
        info = summarise(args.file)
    except (RunFileError, OSError, KeyError) as exc:
        print(f"agetdaq inspect: {exc}")
        return 1
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0
