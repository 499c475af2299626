"""Stage ``process``: built events -> dense waveforms -> features, hits, class, trigger.

Scatters the events' channels into dense (events, strips, samples) waveforms, missing samples
filled with the current baselines, and runs the fused processing kernel over them
(:class:`~agetdaq.readout.datapath.processing.pipeline.Processor`: pedestal, common mode, hits,
features, classification, software trigger). Shed batches pass untouched. Keeps the corrected
waveforms when a later stage wants them ("waveforms", e.g. the monitor's sampled event). Counts
the events processed and the channel rows the scatter could not place (no strip nor FPN channel,
bins past the last cell, a channel sent twice).
"""

from __future__ import annotations

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.processing.waveforms import scatter
from agetdaq.readout.datapath.stage import PathContext, PathCounters, PipelineError, RunState, Stage


class Process(Stage):
    name = "process"
    needs = ("built",)
    adds = ("dense", "processed")

    def __init__(self, context: PathContext, options=None) -> None:
        super().__init__(context, options)
        if context.processor is None:
            raise PipelineError("stage 'process' needs a processor (none was given)")
        self.processor = context.processor
        self.layout = self.processor.layout
        self._counts = [0, 0, 0, 0]  # processed, ignored rows, bad bins, duplicate rows

    def begin_run(self, run: RunState) -> None:
        self.processor.reset()
        self._counts = [0, 0, 0, 0]

    def process(self, batch: Batch) -> None:
        if not batch.shed:
            p = self.processor
            fill, fpn_fill = p.fill_values()
            dense = scatter(batch.flat_rows(), self.layout, fill, fpn_fill)
            batch.dense = dense
            batch.processed = p.process(
                dense.strips,
                dense.fpn,
                dense.fpn_complete,
                dense.complete,
                events=batch.built.event_id,
                keep_waveforms=self.context.wanted("waveforms"),
            )
            c = self._counts
            c[0] += len(batch.built)
            c[1] += dense.ignored_rows
            c[2] += dense.bad_bins
            c[3] += dense.duplicate_rows
        self.emit(batch)

    def warm_up(self, batch: Batch) -> None:
        if batch.built is None:
            return
        p = self.processor
        dense = scatter(batch.flat_rows(), self.layout, 250.0, 250.0)
        batch.dense = dense
        batch.processed = p.process(dense.strips, dense.fpn, dense.fpn_complete, dense.complete)
        p.reset()

    def counters(self) -> dict[str, int]:
        names = ("events_processed", "ignored_rows", "bad_bins", "duplicate_rows")
        return dict(zip(names, self._counts))

    def add_totals(self, totals: PathCounters) -> None:
        totals.events_processed += self._counts[0]
