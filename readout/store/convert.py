"""Conversions between run formats: legacy ``.aqs`` and pcap captures to / from agetdaq run files.

* ``.aqs`` -> ``.h5``: the frames of the ``.aqs`` (and its ``-NNN`` sub-runs) become the run
  file's raw datagrams, with lead words rebuilt as the card numbers data replies (0x0100 on the
  first, then 0x01, 0x02, ... mod 256); they are decoded and built by the acquisition's own
  decoder and builder and every channel is stored. Processing features are not computed: the
  events carry ``build_flags`` NOT_PROCESSED (0x8000).
* pcap -> ``.h5``: the same with the captured datagrams of one board (lead words as captured).
* ``.h5`` -> ``.aqs``: the run file's raw datagrams without their lead word, optionally wrapped in
  built-event markers 0x0009 ... 0x0008 (feminos-daq's rule: an event ends with the frame whose
  last items are END_OF_EVENT + size). A run file written without raw datagrams is re-encoded
  from its stored waveforms instead (then only the stored channels are in the ``.aqs``).
* ``.h5`` / ``.aqs`` -> ``.root``: :mod:`agetdaq.readout.store.rootexport`.

:func:`record_events` gives the events of any of these files as the card sent them (for an
``.h5``, decoded from the raw datagrams), which is what :func:`compare_events` checks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from agetdaq import __version__
from agetdaq.protocol import words as w
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.event import Event
from agetdaq.readout.datapath.build import BuiltBatch, EventBuilder
from agetdaq.readout.datapath.rows import EVENT_DTYPE, event_rows, stored_channels
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter, WriterConfig

BATCH = 1024  # datagrams per decode step
_RUN_NUMBER = re.compile(r"R(\d{3,})")
FORMATS = ("aqs", "h5", "pcap", "root")


class ConvertError(ValueError):
    """A conversion that cannot be done; the message says why."""


@dataclass
class ConvertReport:
    source: str
    output: str
    events: int = 0
    datagrams: int = 0
    notes: list[str] = field(default_factory=list)
    counters: dict[str, object] = field(default_factory=dict)


def file_format(path: Path, existing: bool = True) -> str:
    """'aqs', 'h5', 'pcap' or 'root': sniffed for an existing file, else from the suffix."""
    if existing and path.exists():
        from agetdaq.readout.cli.dump import DumpError, sniff_format

        try:
            return sniff_format(path)
        except DumpError as exc:
            raise ConvertError(str(exc)) from None
    suffix = path.suffix.lower()
    for fmt, suffixes in {
        "aqs": (".aqs",),
        "h5": (".h5", ".hdf5"),
        "pcap": (".pcap", ".pcapng"),
        "root": (".root",),
    }.items():
        if suffix in suffixes:
            return fmt
    raise ConvertError(f"{path}: unknown output format (use .h5, .aqs or .root)")


# ---- datagrams -> run file -------------------------------------------------------------------


def rebuilt_leads(frames: Iterable[bytes]) -> Iterator[bytes]:
    """Frames (SOF ... EOF) as datagrams with the lead words the card would have given them."""
    for i, frame in enumerate(frames):
        lead = 0x0100 if i == 0 else i & 0xFF
        yield lead.to_bytes(2, "little") + frame


def datagrams_to_h5(
    datagrams: Iterable[bytes],
    output: str | Path,
    metadata: dict[str, object],
    *,
    start_unix: float | None = None,
    lut: np.ndarray | None = None,
    writer_config: WriterConfig | None = None,
) -> ConvertReport:
    """Write a run file from data datagrams (lead word included): raw record, events, channels."""
    from agetdaq.readout.datapath.processing.waveforms import StripLayout

    lut = StripLayout.default().lut if lut is None else lut
    t_ns = int((time.time() if start_unix is None else start_unix) * 1e9)
    report = ConvertReport("", str(output))
    decoder = StreamDecoder(check_seq=True, has_lead=True)
    builder = EventBuilder()
    meta = {"software_version": __version__, "run_type": "converted", **metadata}
    writer = RunWriter(output, EVENT_DTYPE, meta, writer_config or WriterConfig(swmr=False))
    try:

        def store(built: BuiltBatch) -> None:
            if len(built):
                rows = event_rows(built, None, t_ns)
                ch, bins, adc, aux = stored_channels(built, lut, "all", None, None)
                writer.append_events(rows, ch, bins, adc, aux)
                report.events += len(built)

        for d in _batches(datagrams, BATCH):
            buf, lengths = pack_datagrams(d)
            writer.append_raw(buf, lengths, np.full(len(d), t_ns, dtype=np.int64))
            report.datagrams += len(d)
            store(builder.build(decoder.decode(buf, lengths)))
        store(builder.build(decoder.flush()))
        errors = {k: v for k, v in decoder.error_counts().items() if v}
        report.counters = {"decoder": errors, "builder": builder.counters.as_dict()}
    finally:
        writer.close({"stop_reason": "converted", "counters": report.counters})
    return report


def _batches(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def aqs_to_h5(source: str | Path, output: str | Path, **kw: object) -> ConvertReport:
    """Convert an ``.aqs`` run (with its sub-run files) to a run file."""
    from agetdaq.protocol.aqs import AqsFormatError, AqsReader

    source = Path(source)
    try:
        reader = AqsReader(source)
    except AqsFormatError as exc:
        raise ConvertError(f"{source}: {exc}") from None
    start = reader.header.start_time
    m = _RUN_NUMBER.search(source.name)
    meta = {
        "run_number": str(int(m.group(1))) if m else "0",
        "comment": f"converted from {source.name}",
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
        "source_file": str(source),
        "source_format": "aqs",
        "aqs_name_length": str(reader.header.name_length),
    }
    report = datagrams_to_h5(rebuilt_leads(reader.frames()), output, meta, start_unix=start, **kw)
    report.source = str(source)
    report.counters["aqs"] = dict(reader.counts)
    return report


def pcap_to_h5(
    source: str | Path, output: str | Path, board: tuple[str, int] | None = None, **kw: object
) -> ConvertReport:
    """Convert one board's data datagrams of a capture to a run file."""
    from agetdaq.readout.simulation.capture_replay import ReplayError, load_capture

    source = Path(source)
    try:
        cap = load_capture(source, board)
    except ReplayError as exc:
        raise ConvertError(str(exc)) from None
    frames = [d for seg in cap.segments for _, d in seg]
    start = cap.segments[0][0][0] if cap.segments else time.time()
    meta = {
        "run_number": "0",
        "comment": f"converted from {source.name} (board {cap.board[0]}:{cap.board[1]})",
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
        "source_file": str(source),
        "source_format": "pcap",
    }
    report = datagrams_to_h5(frames, output, meta, start_unix=start, **kw)
    report.source = str(source)
    return report


# ---- run file -> .aqs ------------------------------------------------------------------------


def ends_event(frame: bytes) -> bool:
    """feminos-daq's rule: END_OF_EVENT + size are the last two words before END_OF_FRAME."""
    if len(frame) < 8:
        return False
    eoe = int.from_bytes(frame[-6:-4], "little")
    eof = int.from_bytes(frame[-2:], "little")
    return eof == w.END_OF_FRAME and eoe & 0xFFF0 == w.END_OF_EVENT


def h5_to_aqs(
    source: str | Path, output: str | Path, *, built: bool = False, chunk_bytes: int | None = None
) -> ConvertReport:
    """Write a run file's data frames to an ``.aqs`` (see the module docstring)."""
    from agetdaq.protocol.aqs import AqsWriter

    source = Path(source)
    report = ConvertReport(str(source), str(output))
    with RunFile(source) as f:
        meta = f.metadata()
        run = int(meta.get("run_number", "0") or 0)
        name = f"R{run:05d}_{meta.get('run_type', 'run') or 'run'}"
        if meta.get("aqs_name_length", "").isdigit():  # from an .aqs: keep its header
            length = max(1, int(meta["aqs_name_length"]) - 1)
            name = name[:length].ljust(length, "_")
        start = _start_unix(meta.get("start_time", ""), float(f.attrs().get("created_unix", 0)))
        skipped = 0
        with AqsWriter(output, name, int(start), chunk_bytes) as writer:
            if f.n_datagrams:
                in_event = False
                for a in range(0, f.n_datagrams, 4 * BATCH):
                    for d in f.datagrams(a, a + 4 * BATCH):
                        if len(d) < 4 or (d[2] | d[3] << 8) & 0xFE00 != w.START_OF_DFRAME:
                            skipped += 1
                            continue
                        if built and not in_event:
                            writer.begin_built_event()
                            in_event = True
                        writer.write_datagram(d)
                        report.datagrams += 1
                        if ends_event(d):
                            report.events += 1  # events closed at a frame end
                            if built:
                                writer.end_built_event()
                                in_event = False
                if in_event:
                    writer.end_built_event()
            else:
                report.notes.append(
                    "the run file holds no raw datagrams: events re-encoded from the stored "
                    "waveforms (only the stored channels)"
                )
                events = list(f.iter_events())
                writer.write_events(events, built=built)
                report.events = len(events)
        report.counters = {"files": [str(p) for p in writer.paths], "skipped": skipped}
    if skipped:
        report.notes.append(f"{skipped} raw datagrams that are not data frames were left out")
    return report


def _start_unix(text: str, fallback: float) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (ValueError, OverflowError):
        return fallback


# ---- events of any format ----------------------------------------------------------------------


def h5_record_events(path: str | Path) -> Iterator[Event]:
    """Events decoded from a run file's raw datagrams (all channels, as the card sent them)."""
    decoder = StreamDecoder(check_seq=True, has_lead=True)
    with RunFile(path) as f:
        for a in range(0, f.n_datagrams, BATCH):
            batch = list(f.datagrams(a, a + BATCH))
            yield from decoder.decode(*pack_datagrams(batch)).events()
    yield from decoder.flush().events()


def record_events(path: str | Path) -> Iterator[Event]:
    """Events of an ``.aqs``, pcap or run file, as the card sent them."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "aqs":
        from agetdaq.protocol.aqs import AqsReader

        return AqsReader(path).events()
    if fmt == "h5":
        with RunFile(path) as f:
            raw = f.n_datagrams > 0
        return h5_record_events(path) if raw else RunFile(path).iter_events()
    if fmt == "pcap":
        from agetdaq.protocol.decode import decode_datagrams
        from agetdaq.readout.simulation.capture_replay import load_capture

        cap = load_capture(path)
        events, _ = decode_datagrams([d for seg in cap.segments for _, d in seg])
        return iter(events)
    raise ConvertError(f"{path}: cannot read events from a {fmt} file here")


def compare_events(a: Iterable[Event], b: Iterable[Event]) -> dict[str, int]:
    """Counts of events in each and of pairs (in order) whose data differ."""
    n_a = n_b = differ = 0
    it_b = iter(b)
    for ev in a:
        n_a += 1
        other = next(it_b, None)
        if other is None:
            continue
        n_b += 1
        differ += not ev.same_data(other)
    n_b += sum(1 for _ in it_b)
    return {"events_a": n_a, "events_b": n_b, "differ": differ}


def convert(source: str | Path, output: str | Path, **options: object) -> ConvertReport:
    """Dispatch on the two formats. Options: ``built``, ``chunk_bytes`` (to .aqs), ``board`` (from
    pcap), ``lut`` (to .h5), and :func:`agetdaq.readout.store.rootexport.export_root`'s (to .root).
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise ConvertError(f"{source}: no such file")
    if source.resolve() == output.resolve():
        raise ConvertError("input and output are the same file")
    src, dst = file_format(source), file_format(output, existing=False)

    def pick(*names: str) -> dict[str, object]:
        return {k: v for k, v in options.items() if k in names and v is not None}

    if dst == "h5" and src == "aqs":
        return aqs_to_h5(source, output, **pick("lut"))
    if dst == "h5" and src == "pcap":
        return pcap_to_h5(source, output, **pick("board", "lut"))
    if dst == "aqs" and src == "h5":
        return h5_to_aqs(source, output, **pick("built", "chunk_bytes"))
    if dst == "root" and src in ("h5", "aqs"):
        from agetdaq.readout.store.rootexport import ROOT_OPTIONS, export_root

        return export_root(source, output, **pick(*ROOT_OPTIONS))
    raise ConvertError(f"no conversion from {src} to {dst} (h5<->aqs, pcap->h5, h5/aqs->root)")
