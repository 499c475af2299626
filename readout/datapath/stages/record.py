"""Stages ``record_raw`` and ``record``: the run file (the run's writer, if it has one).

``record_raw`` appends every datagram of the ring batch as received (it reads the ring views).
``record`` appends the event rows and the channel waveforms the store mode keeps: ``hits`` the
hit strips of triggered events, ``events`` every channel of triggered events, ``all`` every
channel, ``none`` nothing. A shed event keeps all its channels, or, when the file keeps the raw
datagrams and the mode is not ``all``, none: its samples are read back from the raw record
(build flag SAMPLES_IN_RAW). A run with an event limit (``run.max_events``) gets exactly that
many events: the ones after (the card's memory draining at the stop, a backlog) are counted
``over_limit``, not recorded and not passed on (the stages after it see what the file holds).
A writer failure is counted, ends the recording of the run
(``run.failure``; the acquisition stops the run) and never the data path.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

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


def first_events(batch: Batch, n: int) -> Batch:
    """The first ``n`` events of a batch that went through the stages before record (every
    per-event table cut to them)."""
    total = len(batch)
    part = batch.part(0, n)
    part.rows = batch.rows[:n] if batch.rows is not None else None
    part.processed = _head(batch.processed, n, total)
    part.dense = _head(batch.dense, n, total)
    return part


def _head(obj, n: int, total: int):
    """A dataclass of per-event arrays cut to its first ``n`` events (other fields as they are)."""
    if obj is None:
        return None
    cut = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == total:
            cut[f.name] = value[:n]
    return replace(obj, **cut)


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
        self.over_limit = 0

    def begin_run(self, run: RunState) -> None:
        super().begin_run(run)
        self.over_limit = 0

    def process(self, batch: Batch) -> None:
        w = self._writer()
        if w is not None:
            rows, built, proc = batch.rows, batch.built, batch.processed
            room = len(rows)
            if self.run.max_events is not None:
                room = max(0, min(room, self.run.max_events - self.written))
                self.over_limit += len(rows) - room
            if room:
                self._append(w, rows, built, proc, room)
            if room < len(rows):
                if room:
                    self.emit(first_events(batch, room))
                return
        self.emit(batch)

    def _append(self, w, rows: np.ndarray, built, proc, n: int) -> None:
        """The first ``n`` events of the batch into the file."""
        if proc is not None:
            trig, hit = proc.features["trig"], proc.hit
            ch, bins, adc, aux = stored_channels(built, self.lut, self.options.store, trig, hit)
        elif w.config.raw and self.options.store != "all":
            # the raw record holds every sample: no second, decoded copy (readers decode it)
            rows["build_flags"] |= SAMPLES_IN_RAW
            ch, bins, adc, aux = _NO_CHANNELS, _NO_SAMPLES, _NO_SAMPLES, aux_rows(built)
        else:
            ch, bins, adc, aux = stored_channels(built, self.lut, "all", None, None)
        if n < len(rows):  # rows are in event order: the first n events are a prefix of each
            rows = rows[:n]
            k = int(np.searchsorted(ch["event_row"], n))
            n_samples = int(ch["n_samples"][:k].sum())
            ch, bins, adc = ch[:k], bins[:n_samples], adc[:n_samples]
            aux = aux[: int(np.searchsorted(aux["event_row"], n))]
        try:
            w.append_events(rows, ch, bins, adc, aux)
            self.written += len(rows)
        except WriterError as exc:
            self._fail(exc)

    def tick(self) -> None:
        w = self._writer()
        if w is not None:
            try:
                w.tick()
            except WriterError as exc:
                self._fail(exc)

    def counters(self) -> dict[str, int]:
        return {
            "events_written": self.written,
            "over_limit": self.over_limit,
            "errors": self.errors,
        }
