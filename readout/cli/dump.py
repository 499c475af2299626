"""``agetdaq dump FILE``: print the events of an .aqs, pcap/pcapng or run .h5 file.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TextIO

from agetdaq.protocol.dumpfmt import event_to_dict, event_to_text, strip_namer
from agetdaq.protocol.event import Event

DECODE_BATCH = 1024  # datagrams per decoder call
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class DumpError(Exception):
    """A file that cannot be dumped; the message says why."""


@dataclass
class Source:
    """Events of one file and, once they are consumed, the counters of the reading."""

    format: str
    events: Iterator[Event]
    decoder_errors: Callable[[], dict[str, int]] = dict
    counts: Callable[[], dict[str, int]] = dict
    first_id: int = 0  # file position of the first event yielded (h5 reads only the slice)


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


def sniff_format(path: Path) -> str:
    """'aqs', 'pcap' or 'h5', from the first bytes, else from the file name."""
    from agetdaq.protocol.aqs import parse_header
    from agetdaq.protocol.pcap import is_capture

    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if is_capture(path):
        return "pcap"
    suffix = path.suffix.lower()
    if suffix == ".aqs":
        return "aqs"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    try:
        parse_header(head)
    except ValueError:
        raise DumpError(f"{path}: not an .aqs, pcap/pcapng or HDF5 run file") from None
    return "aqs"


def open_aqs(path: Path) -> Source:
    from agetdaq.protocol.aqs import AqsFormatError, AqsReader

    try:
        reader = AqsReader(path)
    except AqsFormatError as exc:
        raise DumpError(f"{path}: {exc}") from None
    return Source("aqs", reader.events(), lambda: reader.decoder_errors, lambda: reader.counts)


def _pcap_events(path: Path, port: int, errors: dict[str, int], stats: dict) -> Iterator[Event]:
    """Decode each board's datagrams with its own decoder, in capture order."""
    from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
    from agetdaq.protocol.pcap import is_reply, read_pcap

    decoders: dict[tuple, StreamDecoder] = {}
    pending: dict[tuple, list[bytes]] = {}

    def drain(src: tuple, final: bool = False) -> list[Event]:
        dec = decoders[src]
        out = dec.decode(*pack_datagrams(pending[src])).events() if pending[src] else []
        pending[src] = []
        if final:
            out += dec.flush().events()
        return out

    for rec in read_pcap(path, stats):
        if rec.src[1] != port:
            continue
        if is_reply(rec.payload):
            stats["replies"] = stats.get("replies", 0) + 1
            continue
        if rec.src not in decoders:
            decoders[rec.src] = StreamDecoder(check_seq=True, has_lead=True)
            pending[rec.src] = []
        pending[rec.src].append(rec.payload)
        if len(pending[rec.src]) >= DECODE_BATCH:
            yield from drain(rec.src)
    for src in decoders:
        yield from drain(src, final=True)
    stats["boards"] = len(decoders)
    for dec in decoders.values():
        for name, n in dec.error_counts().items():
            errors[name] = errors.get(name, 0) + n


def open_pcap(path: Path, port: int) -> Source:
    from agetdaq.protocol.pcap import new_stats

    errors: dict[str, int] = {}
    stats: dict[str, int] = new_stats()
    return Source("pcap", _pcap_events(path, port, errors, stats), lambda: errors, lambda: stats)


def open_h5(path: Path, start: int | None, stop: int | None) -> Source:
    """Hook for agetdaq run files: ``agetdaq.readout.store.reader.RunFile.iter_events`` when
    available."""
    try:
        from agetdaq.readout.store.reader import RunFile, RunFileError
    except ImportError:
        raise DumpError(f"{path}: reading HDF5 run files is not supported yet") from None
    try:
        run = RunFile(path)
    except RunFileError as exc:
        raise DumpError(str(exc)) from None
    first = start or 0

    def events() -> Iterator[Event]:
        try:
            yield from run.iter_events(first, stop)
        finally:
            run.close()

    return Source("h5", events(), first_id=first)


def load(path: Path, port: int, start: int | None, stop: int | None) -> Source:
    """The events of a file (``start``/``stop`` may be applied by the reader or by the caller)."""
    if not path.exists():
        raise DumpError(f"{path}: no such file")
    if not path.is_file():
        raise DumpError(f"{path}: not a regular file")
    fmt = sniff_format(path)
    if fmt == "h5":
        return open_h5(path, start, stop)
    if fmt == "pcap":
        return open_pcap(path, port)
    return open_aqs(path)


def _summary(path: Path, source: Source, n_events: int, complete: bool) -> dict:
    return {
        "file": str(path),
        "format": source.format,
        "events": n_events,
        "complete": complete,  # False: reading stopped after --events, counters are partial
        "decoder_errors": source.decoder_errors(),
        "source": source.counts(),
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
    path = Path(args.file)
    start, stop = args.events or (None, None)
    try:
        source = load(path, args.port, start, stop)
        strip_of = strip_namer(args.rst_len)
        out = sys.stdout
        skip = (start or 0) - source.first_id
        selected = islice(source.events, skip, None if stop is None else stop - source.first_id)
        n = 0
        for i, event in enumerate(selected, start=(start or 0)):
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
    except DumpError as exc:
        print(f"agetdaq dump: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
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
    p.add_argument("--port", type=int, default=1122, help="board UDP port in captures (1122)")
    p.add_argument(
        "--rst-len", type=int, choices=(0, 1), default=0, help="card rst_len, for strip names"
    )
    p.set_defaults(func=run)
