"""Stage ``decode``: datagrams -> flat tables of the events that ended in them.

Reads the ring views and copies what it needs (the ring slots go back right after it). Every data
frame is judged as a whole first (:class:`~agetdaq.protocol.decode.StreamDecoder`, ``validate``):
a frame of another card than the strip mapping's, one outside the board's sequence window (the
run's ``seq_window``) or one with a flaw no in-step frame can have is dropped whole, so nothing of
it joins an event spanning frames. An event still open at the end of the batch is carried to the
next; at the end of the run it is passed on closed TRUNCATED. Counts the decoder's errors by kind
(what it dropped and why) and leaves the verdict of every datagram in ``batch.extra[VERDICTS]``
(the sequence stage counts only the datagrams the decoder took).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from agetdaq.protocol.decode import StreamDecoder
from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.stage import PathContext, PathCounters, RunState, Stage

VERDICTS = "decode.verdicts"  # batch.extra key: int8 per datagram (protocol.decode_kernel V_*)


@dataclass(frozen=True)
class DecodeOptions:
    validate: bool = True  # judge each frame as a whole (off: item by item, for diagnosis)
    check_card: bool = True  # refuse frames of another card than the mapping's (one card)


def mapping_card(lut: np.ndarray) -> int:
    """The one card the strip mapping reads (``lut``: card x chip x channel -> strip), or -1."""
    cards = np.unique(np.nonzero(np.asarray(lut) >= 0)[0])
    return int(cards[0]) if len(cards) == 1 else -1


class Decode(Stage):
    name = "decode"
    needs = ("raw",)
    adds = ("decoded",)
    Options = DecodeOptions

    def __init__(self, context: PathContext, options: DecodeOptions | None = None) -> None:
        super().__init__(context, options)
        self.card_id = mapping_card(context.layout.lut) if self.options.check_card else -1
        self.decoder = self._decoder(RunState())
        self.errors: dict[str, int] = {}

    def _decoder(self, run: RunState) -> StreamDecoder:
        return StreamDecoder(
            validate=self.options.validate, card_id=self.card_id, seq_window=run.seq_window
        )

    def begin_run(self, run: RunState) -> None:
        self.decoder = self._decoder(run)
        self.errors = {}

    def process(self, batch: Batch) -> None:
        raw = batch.raw
        decoded = self.decoder.decode(raw.buf, raw.lengths)
        batch.extra[VERDICTS] = decoded.verdict
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
