"""``agetdaq dump FILE``: print the events of an .aqs, pcap/pcapng or run .h5 file (``open_run``).

Text for people by default. ``--json`` prints one JSON object per event per line on stdout:
{"event_id", "event_count", "timestamp", "type", "source_id", "channels": [{"card", "chip",
"channel", "strip", "samples": {"<time bin>": adc}}], "hit_counts", "last_cells", "errors"}
(raw ADC as received; event_id = position in the file; errors = the event's damage flags), and
at the end one summary object on stderr: {"summary": {"file", "format", "events", "complete",
"decoder_errors": {name: n}, "source": {name: n}}}. "source" holds the reader's own counters
(frames, built-event markers, skipped packets ...); "complete" is false when --events stopped
the reading early, so the counters cover only what was read. In text mode the summary follows
the events on stdout. Exit status: 0 when the file was read (damage inside it is reported, not
fatal), 1 when it cannot be read, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agetdaq.readout.store.errors import RunFileError

if TYPE_CHECKING:
    from agetdaq.readout.store.run import Run

from agetdaq.protocol.dumpfmt import event_to_dict, event_to_text, strip_namer


def parse_range(text: str) -> tuple[int | None, int | None]:
    """``A:B`` (B exclusive), ``A:``, ``:B`` or ``N`` (one event) -> (start, stop)."""
    try:
        if ":" not in text:
            n = int(text)
            return n, n + 1
        a, b = text.split(":", 1)
        start, stop = (int(a) if a.strip() else None), (int(b) if b.strip() else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B, A:, :B or N, not {text!r}") from None
    if (start is not None and start < 0) or (stop is not None and stop < 0):
        raise argparse.ArgumentTypeError("event numbers count from 0")
    return start, stop


def _summary(path: Path, run: Run, n_events: int, complete: bool) -> dict:
    counters = run.counters()
    return {
        "file": str(path),
        "format": run.format,
        "events": n_events,
        "complete": complete,  # False: reading stopped after --events, counters are partial
        "decoder_errors": counters["decoder_errors"],
        "source": counters["source"],
    }


def _print_text_summary(summary: dict, out: TextIO) -> None:
    errors = {k: v for k, v in summary["decoder_errors"].items() if v}
    counts = {k: v for k, v in summary["source"].items() if v}
    print(f"-- {summary['events']} events from {summary['file']} ({summary['format']})", file=out)
    print("-- decoder errors: " + (_kv(errors) or "none"), file=out)
    if counts:
        print("-- reader: " + _kv(counts), file=out)


def _kv(d: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.store.run import open_run

    path = Path(args.file)
    start, stop = args.events or (None, None)
    try:
        with open_run(path, port=args.port) as source:
            rst_len = source.rst_len if args.rst_len is None else args.rst_len
            strip_of = strip_namer(rst_len, source.mapping)
            out = sys.stdout
            n = 0
            for i, event in enumerate(source.events(start or 0, stop), start=(start or 0)):
                if args.json:
                    out.write(json.dumps(event_to_dict(event, i, strip_of)) + "\n")
                else:
                    out.write(event_to_text(event, i, strip_of) + "\n")
                n += 1
            summary = _summary(path, source, n, stop is None)
        if args.json:
            print(json.dumps({"summary": summary}), file=sys.stderr)
        else:
            _print_text_summary(summary, out)
        out.flush()
    except RunFileError as exc:
        print(f"agetdaq dump: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, BrokenPipeError):
            # reader went away (`| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"agetdaq dump: {path}: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dump",
        help="print the events of an .aqs, pcap/pcapng or run .h5 file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help=".aqs (legacy), .pcap/.pcapng (board traffic) or .h5 (run file)")
    p.add_argument("--json", action="store_true", help="one JSON object per event per line")
    p.add_argument(
        "--events",
        type=parse_range,
        metavar="A:B",
        help="only events A..B-1 (0-based file positions); also A:, :B or N",
    )
    p.add_argument(
        "--port", type=int, help="board UDP port in captures (default: any source of board frames)"
    )
    p.add_argument(
        "--rst-len",
        type=int,
        choices=(0, 1),
        help="card rst_len, for strip names (default: the run file's, else 0)",
    )
    p.set_defaults(func=run)
