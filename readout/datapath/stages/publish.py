"""Stage ``publish``: every batch to the monitor feed (summaries, sampled events, histograms).

The feed (:class:`~agetdaq.readout.analysis.monitor.MonitorFeed`, handed in by the acquisition)
rate-limits what it puts on the stream and never blocks. It asks the processing for corrected
waveforms when it is about to publish a sampled event ("waveforms").
"""

from __future__ import annotations

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.stage import PathContext, RunState, Stage


class Publish(Stage):
    name = "publish"
    needs = ("rows",)

    def __init__(self, context: PathContext, options=None) -> None:
        super().__init__(context, options)
        self.feed = context.feed
        if self.feed is not None:
            context.want("waveforms", self.feed.wants_event)

    def begin_run(self, run: RunState) -> None:
        if self.feed is not None:
            self.feed.begin_run(run.number, run.type)

    def process(self, batch: Batch) -> None:
        if self.feed is not None:
            proc = batch.processed
            if proc is None:
                self.feed.on_batch(batch.rows, None, None, batch.time_ns)
            else:
                self.feed.on_batch(batch.rows, proc.hit, proc.waveforms, batch.time_ns)
        self.emit(batch)

    def tick(self) -> None:
        if self.feed is not None:
            self.feed.tick()

    def end_run(self) -> None:
        if self.feed is not None:
            self.feed.end_run()
