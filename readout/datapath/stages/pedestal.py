"""Stage ``pedestal``: in pedestal runs, accumulates the dense waveforms into a pedestal table.

Active in the runs of ``run_types`` only; there no event may be shed (``run.keep_all``). At the
end of the run the table (mean, raw and common-mode-free noise, dead and noisy strips) is left in
``run.outputs["pedestals"]`` when it saw any event. The noise is measured after the common-mode
correction the processing applies (``[processing] cm_method``, FPN channels by default), since the
processing's hit thresholds are k times that noise: a noise measured with a better correction
(the median of the quiet strips) reads low-noise strips up to ~2x too quiet against what the
FPN-corrected data show, and their noise then makes spurious clusters. Counts the events
accumulated: in a run with an event limit, the first ``max_events`` (those its file holds).
"""

from __future__ import annotations

from dataclasses import dataclass

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.processing.pedestal import PedestalAccumulator
from agetdaq.readout.datapath.stage import PathContext, RunState, Stage

OUTPUT = "pedestals"


@dataclass(frozen=True)
class PedestalOptions:
    run_types: tuple[str, ...] = ("pedestal",)
    per_cell: bool = False  # per SCA cell means too (a (strips, 512) table)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_types", tuple(self.run_types))


class Pedestal(Stage):
    name = "pedestal"
    needs = ("dense",)
    Options = PedestalOptions

    def __init__(self, context: PathContext, options: PedestalOptions | None = None) -> None:
        super().__init__(context, options)
        self.chip = context.layout.chip
        self.n_chips = context.layout.n_chips
        processor = context.processor
        self.cm_method = processor.config.cm_method if processor is not None else "median"
        self.accumulator: PedestalAccumulator | None = None
        self.events = 0
        context.want("dense", lambda: self.accumulator is not None)  # no sparse path here

    def begin_run(self, run: RunState) -> None:
        self.events = 0
        self.accumulator = None
        if run.type in self.options.run_types:
            run.keep_all = True
            self.accumulator = PedestalAccumulator(
                self.chip, self.n_chips, per_cell=self.options.per_cell, cm_method=self.cm_method
            )

    def process(self, batch: Batch) -> None:
        if self.accumulator is not None and batch.dense is not None:
            n = len(batch)
            if self.run.max_events is not None:  # the events of the file only (record's limit)
                n = max(0, min(n, self.run.max_events - self.events))
            if n == len(batch):
                self.accumulator.add_dense(batch.dense)
            elif n:
                d = batch.dense
                self.accumulator.add(d.strips[:n], _head(d.complete, n), _head(d.fpn, n),
                                     _head(d.fpn_complete, n))  # fmt: skip
            self.events += n
        self.emit(batch)

    def end_run(self) -> None:
        if self.accumulator is not None and self.events:
            self.run.outputs[OUTPUT] = self.accumulator.result()

    def warm_up(self, batch: Batch) -> None:
        if batch.dense is not None:
            PedestalAccumulator(self.chip, self.n_chips, cm_method=self.cm_method).add_dense(
                batch.dense
            )

    def counters(self) -> dict[str, int]:
        return {"events": self.events}


def _head(a, n: int):
    return None if a is None else a[:n]
