"""Stages ``record_raw`` and ``record``: the run file (the run's writer, if it has one).

``record_raw`` appends every datagram of the ring batch as received (it reads the ring views).
``record`` appends the event rows and the channel waveforms the store mode keeps: ``hits`` the
hit strips of triggered events, ``events`` every channel of triggered events, ``all`` every
channel, ``none`` nothing. A shed event keeps all its channels, or, when the file keeps the raw
datagrams and the mode is not ``all``, none: its samples are read back from the raw record
(build flag SAMPLES_IN_RAW). A writer failure is counted, ends the recording of the run
(``run.failure``; the acquisition stops the run) and never the data path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.rows import aux_rows, stored_channels
from agetdaq.readout.datapath.stage import PathContext, PathCounters, RunState, Stage
from agetdaq.readout.schema import CHANNEL_DTYPE, SAMPLES_IN_RAW
from agetdaq.readout.store.writer import WriterError

STORE_MODES = ("hits", "events", "all", "none")
_NO_CHANNELS = np.zeros(0, CHANNEL_DTYPE)
_NO_SAMPLES = np.zeros(0, np.uint16)


class _Recording(Stage):
    """What both record stages share: the run's writer and the failure rule."""

    def __init__(self, context: PathContext, options=None) -> None:
        super().__init__(context, options)
        self.written = 0
        self.errors = 0

    def begin_run(self, run: RunState) -> None:
        self.written = 0
        self.errors = 0

    def _writer(self):
        """The writer to use now, or None (no file, or it failed)."""
        run = self.run
        return run.writer if run.open and run.failure is None else None

    def _fail(self, exc: WriterError) -> None:
        self.errors += 1
        self.run.fail(str(exc))

    def add_totals(self, totals: PathCounters) -> None:
        totals.writer_errors += self.errors


class RecordRaw(_Recording):
    """Every datagram of the batch into the raw record."""

    name = "record_raw"
    needs = ("raw",)

    def process(self, batch: Batch) -> None:
        w = self._writer()
        if w is not None:
            raw = batch.raw
            try:
                w.append_raw(raw.buf, raw.lengths, raw.arrival_ns + self.context.wall_offset_ns)
                self.written += len(raw.lengths)
            except WriterError as exc:
                self._fail(exc)
        self.emit(batch)

    def counters(self) -> dict[str, int]:
        return {"datagrams_written": self.written, "errors": self.errors}


@dataclass(frozen=True)
class RecordOptions:
    store: str = "hits"  # hits | events | all | none (see the module docstring)

    def __post_init__(self) -> None:
        if self.store not in STORE_MODES:
            raise ValueError(f"store must be one of {STORE_MODES}, not {self.store!r}")


class Record(_Recording):
    """Event rows and the kept channel waveforms into the run file; ticks the writer."""

    name = "record"
    needs = ("built", "rows")
    Options = RecordOptions

    def __init__(self, context: PathContext, options: RecordOptions | None = None) -> None:
        super().__init__(context, options)
        self.lut = context.layout.lut

    def process(self, batch: Batch) -> None:
        w = self._writer()
        if w is not None:
            rows, built, proc = batch.rows, batch.built, batch.processed
            if proc is not None:
                trig, hit = proc.features["trig"], proc.hit
                ch, bins, adc, aux = stored_channels(built, self.lut, self.options.store, trig, hit)
            elif w.config.raw and self.options.store != "all":
                # the raw record holds every sample: no second, decoded copy (readers decode it)
                rows["build_flags"] |= SAMPLES_IN_RAW
                ch, bins, adc, aux = _NO_CHANNELS, _NO_SAMPLES, _NO_SAMPLES, aux_rows(built)
            else:
                ch, bins, adc, aux = stored_channels(built, self.lut, "all", None, None)
            try:
                w.append_events(rows, ch, bins, adc, aux)
                self.written += len(rows)
            except WriterError as exc:
                self._fail(exc)
        self.emit(batch)

    def tick(self) -> None:
        w = self._writer()
        if w is not None:
            try:
                w.tick()
            except WriterError as exc:
                self._fail(exc)

    def counters(self) -> dict[str, int]:
        return {"events_written": self.written, "errors": self.errors}
