"""Conversions out of a run file, and what every conversion shares.

* ``.h5`` -> ``.aqs`` (:func:`h5_to_aqs`): the run file's raw datagrams without their lead word,
  optionally wrapped in built-event markers 0x0009 ... 0x0008 (feminos-daq's rule: an event ends
  with the frame whose last items are END_OF_EVENT + size). A run file written without raw
  datagrams is re-encoded from its stored waveforms instead (then only the stored channels are in
  the ``.aqs``).
* ``.h5`` / ``.aqs`` / capture -> ``.root``: :mod:`agetdaq.readout.store.rootexport`.
* ``.aqs`` / capture -> ``.h5`` runs the data path's decoder and builder over the datagrams, so it
  lives above the store: :mod:`agetdaq.readout.datapath.offline`.

:func:`record_events` gives the events of any of these files as the card sent them (for an
``.h5``, decoded from the raw datagrams), which is what :func:`compare_events` checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agetdaq.protocol import words as w
from agetdaq.protocol.event import Event
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.run import SUFFIXES, open_run

BATCH = 1024  # datagrams per step
OUTPUT_SUFFIXES = {**SUFFIXES, "root": (".root",)}


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


def output_format(path: Path) -> str:
    """'aqs', 'h5', 'pcap' or 'root' from an output file's suffix."""
    suffix = path.suffix.lower()
    for fmt, suffixes in OUTPUT_SUFFIXES.items():
        if suffix in suffixes:
            return fmt
    raise ConvertError(f"{path}: unknown output format (use .h5, .aqs or .root)")


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
    try:
        run = open_run(source)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None
    with run:
        if run.format != "h5":
            raise ConvertError(f"{source}: not an agetdaq run file ({run.format})")
        meta, info = run.metadata, run.info
        name = f"R{info.run_number:05d}_{info.run_type or 'run'}"
        if meta.get("aqs_name_length", "").isdigit():  # from an .aqs: keep its header
            length = max(1, int(meta["aqs_name_length"]) - 1)
            name = name[:length].ljust(length, "_")
        skipped = 0
        with AqsWriter(output, name, int(info.start_unix), chunk_bytes) as writer:
            if run.has_raw:
                in_event = False
                for d in run.datagrams():
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
                events = list(run.events())
                writer.write_events(events, built=built)
                report.events = len(events)
        report.counters = {"files": [str(p) for p in writer.paths], "skipped": skipped}
    if skipped:
        report.notes.append(f"{skipped} raw datagrams that are not data frames were left out")
    return report


# ---- events of any format ----------------------------------------------------------------------


def record_events(path: str | Path) -> Iterator[Event]:
    """Events of an ``.aqs``, capture or run file, as the card sent them."""
    try:
        run = open_run(path)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None

    def events() -> Iterator[Event]:
        with run:
            yield from run.card_events()

    return events()


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
