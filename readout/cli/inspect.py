"""``agetdaq inspect RUN``: what a run holds, in a few lines (or JSON).

Reads any run ``open_run`` reads: a run file (.h5), an .aqs run or a capture. The classes, the
X-ray peak and the losses come from the processing and the DAQ's counters, so only a run file
has them. A damaged file is summarised as far as it can be read; the damage is listed
(``damage``, and on stderr) and the exit status is 3. ``--check`` also reads every table to the
end (every compressed block), which finds damage the summary does not touch.

Exit status: 0 ok, 1 not readable at all, 2 bad arguments, 3 damaged, 4 a run file of a newer
format version.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agetdaq.readout.cli.common import (
    Exit,
    add_common,
    add_source,
    emit,
    fail,
    file_error_code,
    parse_source,
    report_damage,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="summary of a run (.h5 run file, .aqs, capture)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("file", help="run file (.h5), .aqs run or .pcap/.pcapng capture")
    p.add_argument("--check", action="store_true", help="read every table to the end")
    add_source(p)
    add_common(p)
    p.set_defaults(func=run)


def summarise(
    path: str, check: bool = False, board: tuple[str, int] | None = None
) -> tuple[dict, Any]:
    """(summary, the run) of a file (``board``: the source to read in a capture); RunFileError
    when it cannot be opened. What cannot be read is left out of the summary and listed in
    ``run.damage``."""
    from agetdaq.readout.store.errors import RunFileError
    from agetdaq.readout.store.run import open_run

    with open_run(path, board=board) as f:
        info = f.info
        out: dict = {"file": path, "format": info.format}

        def part(what: str, read, default):
            try:
                return read()
            except (RunFileError, OSError, ValueError, KeyError) as exc:
                f.damage.append(f"{what}: {str(exc).removeprefix(f'{f.path}: ')}")
                return default

        meta = f.metadata
        final = part("end-of-run record", lambda: f.final, {})
        import numpy as np

        ev = part("events", f.rows, None)
        status = part("status", f.status, [])
        n_dgram = part("raw datagrams", lambda: f.n_datagrams, 0)
        raw_bytes = part("raw datagrams", lambda: f.raw_bytes, 0) if n_dgram else 0
        if check:
            part("check", f.verify, None)
        closed = f.info.closed
    out.update(
        {
            "run_number": meta.get("run_number"),
            "run_type": meta.get("run_type"),
            "comment": meta.get("comment"),
            "start": meta.get("start_time"),
            "stop": final.get("stop_time"),
            "stop_reason": final.get("stop_reason")
            or ("file not closed (writer crashed or running)" if not closed else None),
            "events": len(ev) if ev is not None else None,
            "datagrams": n_dgram,
            "raw_mb": raw_bytes / 1e6,
        }
    )
    if info.format != "h5":
        out["stop_reason"] = None
    if ev is not None and len(ev):
        out.update(_event_summary(ev, np))
    counters = _json(final.get("counters"))
    if counters is not None:
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
    out["damage"] = list(f.damage)
    return out, f


def _json(text: str | None) -> dict | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _event_summary(ev, np) -> dict:
    from agetdaq.readout.schema import BUILDER_FLAGS, CLASS_NAMES, NOT_PROCESSED, EventClass

    out: dict = {}
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
    xray = xray[np.isfinite(xray)]
    if len(xray) >= 20:
        hist, edges = np.histogram(xray, bins=100)
        out["xray_peak_adc"] = float(0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1]))
    return out


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.store.errors import RunFileError

    try:
        board = parse_source(args.source)
    except ValueError as exc:
        return fail(f"{exc}", Exit.USAGE)
    try:
        info, source = summarise(args.file, args.check, board)
    except RunFileError as exc:
        return fail(f"{exc}", file_error_code(exc))
    except OSError as exc:
        return fail(f"{args.file}: {exc.strerror or exc}")
    from agetdaq.readout.cli.dump import no_board_traffic

    empty = no_board_traffic(source)
    if empty:
        return fail(f"{args.file}: {empty}", Exit.FAILURE)
    emit(args, info)
    return report_damage(args, source)
