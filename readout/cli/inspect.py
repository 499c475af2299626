"""``agetdaq inspect RUN``: what a run holds, in a few lines (or JSON).

Reads any run ``open_run`` reads: a run file (.h5), an .aqs run or a capture. The classes, the
X-ray peak and the losses come from the processing and the DAQ's counters, so only a run file
has them.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from agetdaq.readout.schema import BUILDER_FLAGS, CLASS_NAMES, NOT_PROCESSED, EventClass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summary of a run (.h5 run file, .aqs, capture)")
    p.add_argument("file", help="run file (.h5), .aqs run or .pcap/.pcapng capture")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def summarise(path: str) -> dict:
    from agetdaq.readout.store.run import open_run

    with open_run(path) as f:
        info, meta, final = f.info, f.metadata, f.final
        ev = f.rows()
        status = f.status()
        n_dgram = f.n_datagrams
        raw_bytes = f.raw_bytes if n_dgram else 0
    out: dict = {
        "file": path,
        "format": info.format,
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
    if info.format != "h5":
        out["stop_reason"] = None
    if len(ev):
        t = ev["time_ns"].astype(np.float64) / 1e9
        ticks = ev["timestamp"].astype(np.float64) * 20e-9
        duration = float(max(t[-1] - t[0], ticks[-1] - ticks[0], 0.0))
        out["duration_s"] = duration
        out["rate_hz"] = len(ev) / duration if duration > 0 else None
        processed = ev[(ev["build_flags"] & NOT_PROCESSED) == 0]
        counts = np.bincount(np.clip(processed["cls"].astype(int), 0, 3), minlength=4)
        out["classes"] = dict(zip(CLASS_NAMES, counts.tolist()))
        out["not_processed"] = len(ev) - len(processed)
        out["damaged_events"] = int((ev["flags"] != 0).sum())
        out["build_flagged"] = int(((ev["build_flags"] & BUILDER_FLAGS) != 0).sum())
        xray = processed["energy"][processed["cls"] == EventClass.XRAY]
        if len(xray) >= 20:
            hist, edges = np.histogram(xray, bins=100)
            out["xray_peak_adc"] = float(0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1]))
    if "counters" in final:
        counters = json.loads(final["counters"])
        out["losses"] = {
            "kernel_drops": counters.get("receiver", {}).get("kernel_drops"),
            "ring_full": counters.get("receiver", {}).get("ring_full_drops"),
            "lost_datagrams": counters.get("sequence", {}).get("missing"),
            "decoder": counters.get("decoder", {}),
            "missing_events": counters.get("builder", {}).get("missing"),
            "writer_errors": counters.get("datapath", {}).get("writer_errors"),
        }
    elif status:
        out["losses"] = status[-1].get("losses", {})
    return out


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.store.errors import RunFileError

    try:
        info = summarise(args.file)
    except (RunFileError, OSError, KeyError, ValueError) as exc:
        print(f"agetdaq inspect: {exc}")
        return 1
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0
