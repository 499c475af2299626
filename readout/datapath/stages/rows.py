"""Stage ``rows``: built events (+ features) -> the rows of the run file's event table.

Header columns from the build, feature columns from the processing; events that were not
processed (shed, or no process stage) get zero features and the build flag NOT_PROCESSED.
"""

from __future__ import annotations

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.rows import event_rows
from agetdaq.readout.datapath.stage import Stage


class Rows(Stage):
    name = "rows"
    needs = ("built",)
    adds = ("rows",)

    def process(self, batch: Batch) -> None:
        proc = batch.processed
        batch.rows = event_rows(
            batch.built, proc.features if proc is not None else None, batch.time_ns
        )
        self.emit(batch)
