"""Stage ``decode``: datagrams -> flat tables of the events that ended in them.

Reads the ring views and copies what it needs (the ring slots go back right after it). An event
still open at the end of the batch is carried to the next; at the end of the run it is passed on
closed TRUNCATED. Counts the decoder's errors by kind (what it dropped and why).
"""

from __future__ import annotations

import time

from agetdaq.protocol.decode import StreamDecoder
from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.stage import PathContext, PathCounters, RunState, Stage


class Decode(Stage):
    name = "decode"
    needs = ("raw",)
    adds = ("decoded",)

    def __init__(self, context: PathContext, options=None) -> None:
        super().__init__(context, options)
        self.decoder = StreamDecoder()
        self.errors: dict[str, int] = {}

    def begin_run(self, run: RunState) -> None:
        self.decoder = StreamDecoder()
        self.errors = {}

    def process(self, batch: Batch) -> None:
        raw = batch.raw
        decoded = self.decoder.decode(raw.buf, raw.lengths)
        if decoded.errors.any():
            self._note_errors()
        if len(decoded):
            batch.decoded = decoded
            self.emit(batch)

    def flush(self) -> None:
        tail = self.decoder.flush()
        self._note_errors()
        if len(tail):
            self.emit(Batch(time.time_ns(), decoded=tail))

    def warm_up(self, batch: Batch) -> None:
        if batch.raw is not None:
            batch.decoded = StreamDecoder().decode(batch.raw.buf, batch.raw.lengths)

    def _note_errors(self) -> None:
        self.errors = {k: v for k, v in self.decoder.error_counts().items() if v}

    def counters(self) -> dict[str, int]:
        return dict(self.errors)

    def add_totals(self, totals: PathCounters) -> None:
        totals.decode_errors.update(self.errors)
