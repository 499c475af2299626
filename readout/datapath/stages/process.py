"""Stage ``process``: built events -> features, hits, class, software trigger.

A zero-suppressed batch goes through the sparse path (the processing on the samples that exist:
:meth:`~agetdaq.readout.datapath.processing.pipeline.Processor.process_sparse`); a full-readout
batch, or one the sparse path cannot take (a channel sent twice in an event, per-cell or
per-event baselines) or when a later stage wants the dense waveforms ("dense", e.g. the pedestal
run), is scattered into dense (events, strips, samples) waveforms, missing samples filled with the
current baselines, and run through the fused dense kernel. Both give the same results (pedestal,
common mode, hits, features, classification, software trigger). Shed batches pass untouched.
Keeps the corrected waveforms when a later stage wants them ("waveforms", e.g. the monitor's
sampled event). Counts the events processed (and how many of them sparse) and the channel rows
the scatter could not place (no strip nor FPN channel, bins past the last cell, a channel sent
twice).
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
        self._counts = [0, 0, 0, 0, 0]  # processed, ignored rows, bad bins, duplicates, sparse

    def begin_run(self, run: RunState) -> None:
        self.processor.reset()
        self._counts = [0, 0, 0, 0, 0]

    def process(self, batch: Batch) -> None:
        if not batch.shed:
            flat = batch.flat_rows()
            c = self._counts
            p = self.processor
            waveforms = self.context.wanted("waveforms")
            told = batch.extra.get("shed")  # the shed stage looked at the whole batch
            sparse = p.wants_sparse(flat) if told is None else told == "sparse"
            if sparse and not self.context.wanted("dense"):
                batch.processed, ignored, bad = p.process_sparse(
                    flat, batch.built.event_id, keep_waveforms=waveforms
                )
                c[1] += ignored
                c[2] += bad
                c[4] += len(batch.built)
            else:
                fill, fpn_fill = p.fill_values()
                dense = scatter(flat, self.layout, fill, fpn_fill)
                batch.dense = dense
                batch.processed = p.process_dense(dense, batch.built.event_id, waveforms)
                c[1] += dense.ignored_rows
                c[2] += dense.bad_bins
                c[3] += dense.duplicate_rows
            c[0] += len(batch.built)
        self.emit(batch)

    def warm_up(self, batch: Batch) -> None:
        if batch.built is None:
            return
        p = self.processor
        flat = batch.flat_rows()
        dense = scatter(flat, self.layout, 250.0, 250.0)
        batch.dense = dense
        batch.processed = p.process_dense(dense)
        p.wants_sparse(flat)
        p.process_sparse(flat, keep_waveforms=True)[0].waveforms[0]
        p.reset()

    def counters(self) -> dict[str, int]:
        names = ("events_processed", "ignored_rows", "bad_bins", "duplicate_rows", "sparse")
        return dict(zip(names, self._counts))

    def add_totals(self, totals: PathCounters) -> None:
        totals.events_processed += self._counts[0]
