"""Stage ``shed``: cuts a built batch into chunks and decides, chunk by chunk, to shed them.

Shedding is a safety valve: when the link's ring fills past ``fill`` of its slots the processing
(not the recording) is shed: the events pass on marked ``shed`` and are recorded NOT_PROCESSED
("not processed online": their data is in the file, nothing is lost). The credit loop holds
grants at half a ring (the board then holds its data: no loss either) and resumes at a quarter;
what is in flight then (a window) still arrives. So the default ``fill`` (0.6) sits above that:
the data path processes everything it is given while flow control works, and sheds only data that
keeps coming past the hold (a board without credit flow, a window larger than the ring's room)
or when it falls so far behind; then until the ring is almost empty (no more than one batch of
datagrams: no flip-flop under overload). A batch found shed is passed on whole; otherwise the
decision is taken again before every chunk, and the rest of the batch is shed at once when the
ring has filled meanwhile.
A chunk is ``chunk_events`` events of a batch processed densely (it bounds the dense waveforms'
memory, 0.5 MB an event) and ``sparse_chunk_events`` of a zero-suppressed batch the sparse path
takes (a few us an event). Nothing is shed while a stage needs every event (``run.keep_all``:
pedestal runs). Counts the events shed.
"""

from __future__ import annotations

from dataclasses import dataclass

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.stage import PathContext, PathCounters, RunState, Stage

SPARSE, DENSE = "sparse", "dense"  # batch.extra["shed"]: the path the batch's chunks take


@dataclass(frozen=True)
class ShedOptions:
    fill: float = 0.6  # ring fill (of its slots) above which processing is shed; 1.0 = never
    chunk_events: int = 32  # events processed at a time (bounds the dense waveforms' memory)
    sparse_chunk_events: int = 1024  # the same for zero-suppressed batches (sparse path)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fill <= 1.0:
            raise ValueError(f"fill must be in [0, 1], got {self.fill}")
        if self.chunk_events < 1 or self.sparse_chunk_events < 1:
            raise ValueError(
                f"chunk_events and sparse_chunk_events must be >= 1, got {self.chunk_events}"
                f" and {self.sparse_chunk_events}"
            )


class Shed(Stage):
    name = "shed"
    needs = ("built",)
    adds = ("shed",)
    Options = ShedOptions

    def __init__(self, context: PathContext, options: ShedOptions | None = None) -> None:
        super().__init__(context, options)
        self.shedding = False
        self.events_shed = 0
        self.chunks = 0

    def begin_run(self, run: RunState) -> None:
        self.events_shed = 0
        self.chunks = 0

    def process(self, batch: Batch) -> None:
        n = len(batch)
        keep_all = self.run.keep_all
        if self._shed_now() and not keep_all:
            self._pass_shed(batch, n)
            return
        step = self.options.chunk_events
        p = self.context.processor
        sparse = (
            p is not None and not self.context.wanted("dense") and p.wants_sparse(batch.flat_rows())
        )
        if sparse:
            step = self.options.sparse_chunk_events
        batch.extra[self.name] = SPARSE if sparse else DENSE  # the process stage's path
        for a in range(0, n, step):
            if a and not keep_all and self._shed_now():
                # the ring filled while the chunks before were processed: the rest is shed
                self._pass_shed(batch.part(a, n), n - a)
                return
            self.chunks += 1
            part = batch.part(a, min(n, a + step))
            part.extra[self.name] = batch.extra[self.name]
            self.emit(part)

    def _pass_shed(self, batch: Batch, n: int) -> None:
        batch.shed = True
        self.events_shed += n
        self.emit(batch)

    def _shed_now(self) -> bool:
        ring = self.context.ring
        if ring is None:
            return False
        fill = ring.fill()
        if fill > self.options.fill * ring.n_slots:
            self.shedding = True
        elif fill <= self.context.batch:
            self.shedding = False
        return self.shedding

    def counters(self) -> dict[str, int]:
        return {"events_shed": self.events_shed, "chunks": self.chunks}

    def add_totals(self, totals: PathCounters) -> None:
        totals.events_shed += self.events_shed
