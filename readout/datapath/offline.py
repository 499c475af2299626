"""The data path over a file: an .aqs run or a capture recorded as an agetdaq run file.

The datagrams of the run (``open_run(...).datagrams()``: for an ``.aqs`` its frames with the lead
words the card would have given them, for a capture one board's datagrams as captured) become
the run file's raw record; they are decoded and built by the acquisition's own decoder and
builder and every channel is stored. Processing features are not computed: the events carry
``build_flags`` NOT_PROCESSED.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from agetdaq import __version__
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.readout.datapath.build import BuiltBatch, EventBuilder
from agetdaq.readout.datapath.rows import event_rows, stored_channels
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.convert import ConvertError, ConvertReport
from agetdaq.readout.store.decoded import PcapRun
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.run import Run, open_run
from agetdaq.readout.store.writer import RunWriter, WriterConfig

BATCH = 1024  # datagrams per decode step


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


def run_to_h5(run: Run, output: str | Path, **kw: object) -> ConvertReport:
    """Record an ``.aqs`` run or one board of a capture as a run file (module docstring)."""
    if run.format == "h5":
        raise ConvertError(f"{run.path} is already a run file")
    meta: dict[str, object] = dict(run.metadata)
    comment = f"converted from {run.path.name}"
    if isinstance(run, PcapRun):
        boards = run.boards()
        if not boards:
            which = f"board {run.board[0]}:{run.board[1]}" if run.board else "board frames"
            raise ConvertError(f"{run.path}: no {which} in the capture")
        if len(boards) > 1:
            names = ", ".join(f"{h}:{p}" for h, p in boards)
            raise ConvertError(f"{run.path}: several boards ({names}); choose one with --source")
        (host, port), *_ = boards
        meta["board"] = f"{host}:{port}"
        comment += f" (board {host}:{port})"
    meta["comment"] = comment
    report = datagrams_to_h5(run.datagrams(), output, meta, start_unix=run.info.start_unix, **kw)
    report.source = str(run.path)
    report.counters[run.format] = run.counters()["source"]
    return report


def to_h5(
    source: str | Path, output: str | Path, board: tuple[str, int] | None = None, **kw: object
) -> ConvertReport:
    """Convert an ``.aqs`` run (with its sub-run files) or a capture to a run file."""
    try:
        run = open_run(source, board=board)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None
    with run:
        return run_to_h5(run, output, **kw)
