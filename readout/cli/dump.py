"""``agetdaq dump FILE``: print the events of an .aqs, pcap/pcapng or run .h5 file (``open_run``).

Text for people by default. ``--json`` prints one JSON object per event per line on stdout:
{"event_id", "event_count", "timestamp", "type", "source_id", "channels": [{"card", "chip",
"channel", "strip", "samples": {"<time bin>": adc}}], "hit_counts", "last_cells", "errors"}
(raw ADC as received; event_id = position in the file; errors = the event's damage flags), and
at the end one summary object on stderr: {"summary": {"file", "format", "events", "complete",
"decoder_errors": {name: n}, "source": {name: n}, "damage": [text]}}. "source" holds the
reader's own counters (frames, built-event markers, skipped packets ...); "complete" is false
when --events stopped the reading early, so the counters cover only what was read. In text mode
the summary follows the events on stdout. ``-o FILE`` writes the events there instead of stdout.

A capture is read for every source that sends board frames, whatever its port; ``--source``
picks one. A capture without board traffic (from the chosen source) is not readable: exit 1,
with the UDP sources it holds named.

Exit status: 0 when the file was read, 1 when it cannot be read at all, 2 for bad arguments,
3 when it is damaged (the events before the damage are printed, the damage on stderr), 4 for a
run file of a newer format version.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agetdaq.readout.cli.common import (
    Exit,
    add_common,
    add_output,
    add_source,
    alias,
    fail,
    file_error_code,
    parse_source,
    printable,
    report_damage,
)

if TYPE_CHECKING:
    from agetdaq.readout.store.run import Run


def parse_range(text: str) -> tuple[int | None, int | None]:
    """``A:B`` (B exclusive), ``A:``, ``:B`` or ``N`` (one event) -> (start, stop)."""
    try:
        if ":" not in text:
            n = int(text)
            start, stop = n, n + 1
        else:
            a, b = text.split(":", 1)
            start, stop = (int(a) if a.strip() else None), (int(b) if b.strip() else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B, A:, :B or N, not {text!r}") from None
    if (start is not None and start < 0) or (stop is not None and stop < 0):
        raise argparse.ArgumentTypeError("event numbers count from 0")
    if start is not None and stop is not None and stop < start:
        raise argparse.ArgumentTypeError(f"{text!r}: the end comes before the start")
    return start, stop


def _summary(path: Path, run: Run, n_events: int, complete: bool) -> dict:
    counters = run.counters()
    return {
        "file": printable(str(path)),  # a non-UTF-8 name as \xNN
        "format": run.format,
        "events": n_events,
        "complete": complete,  # False: reading stopped after --events, counters are partial
        "decoder_errors": counters["decoder_errors"],
        "source": counters["source"],
        "damage": list(run.damage),
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


def sources_note(run: Run) -> str | None:
    """For a capture that gave no event: which sources it holds (to choose with --source)."""
    seen = getattr(run, "sources_seen", None)
    if seen is None:
        return None
    found = seen()
    if not found:
        return "the capture holds no UDP datagram"
    text = ", ".join(f"{h}:{p} ({n} datagrams{', board frames' if b else ''})"
                     for (h, p), (n, b) in sorted(found.items()))  # fmt: skip
    return f"no board traffic read; UDP sources in the capture: {text}"


def no_board_traffic(run: Run) -> str | None:
    """Why a capture holds nothing to read (no board frames, or none from the chosen --source),
    naming the sources it does hold; None for a capture with board traffic or any other file.
    The file commands then fail (exit 1) instead of printing 0 events and exiting 0."""
    has_traffic = getattr(run, "has_board_traffic", None)
    if has_traffic is None or has_traffic():
        return None
    return sources_note(run)


def run(args: argparse.Namespace) -> int:
    from agetdaq.protocol.dumpfmt import event_to_dict, event_to_text, strip_namer
    from agetdaq.readout.store.errors import DamagedRunFileError, RunFileError
    from agetdaq.readout.store.run import open_run

    path = Path(args.file)
    start, stop = args.events or (None, None)
    try:
        source_filter = parse_source(args.source if args.source else
                                     (f":{args.old_port}" if args.old_port else None))  # fmt: skip
    except ValueError as exc:
        return fail(f"{exc}", Exit.USAGE)
    if args.output and Path(args.output).exists() and not args.force:
        return fail(f"{args.output} exists (use --force to replace it)", Exit.USAGE)
    port = board = None
    if source_filter is not None:
        if source_filter[0]:
            board = source_filter
        else:
            port = source_filter[1]
    try:
        source = open_run(path, port=port, board=board)
    except RunFileError as exc:
        return fail(f"{exc}", file_error_code(exc))
    except OSError as exc:
        return fail(f"{path}: {exc.strerror or exc}")
    extra: list[str] = []
    n = 0
    try:
        out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        source.close()
        return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    try:
        with source:
            try:
                rst_len = source.rst_len if args.rst_len is None else args.rst_len
                strip_of = strip_namer(rst_len, source.mapping)
                for i, event in enumerate(source.events(start or 0, stop), start=(start or 0)):
                    if args.json:
                        out.write(json.dumps(event_to_dict(event, i, strip_of)) + "\n")
                    else:
                        out.write(event_to_text(event, i, strip_of) + "\n")
                    n += 1
            except DamagedRunFileError as exc:
                extra.append(f"reading stopped after {n} events: {exc}")
            summary = _summary(path, source, n, stop is None and not extra)
            summary["damage"] += extra
            empty = no_board_traffic(source) if n == 0 and not extra else None
            if args.json:
                print(json.dumps({"summary": summary}), file=sys.stderr)
            else:
                _print_text_summary(summary, out)
            out.flush()
            if empty:
                return fail(f"{path}: {empty}", Exit.FAILURE)
            return report_damage(args, source, extra)
    finally:
        if out is not sys.stdout:
            out.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dump",
        help="print the events of an .aqs, pcap/pcapng or run .h5 file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help=".aqs (legacy), .pcap/.pcapng (board traffic) or .h5 (run file)")
    p.add_argument(
        "--events",
        type=parse_range,
        metavar="A:B",
        help="only events A..B-1 (0-based file positions); also A:, :B or N",
    )
    add_source(p)
    alias(p, "--port", dest="old_port", new="--source :PORT")
    p.add_argument(
        "--rst-len",
        type=int,
        choices=(0, 1),
        help="card rst_len, for strip names (default: the run file's, else 0)",
    )
    add_output(p, "FILE", "write the events to FILE instead of stdout")
    add_common(p, json_help="one JSON object per event per line; the summary on stderr")
    p.set_defaults(func=run)
