"""Stage ``calibration``: the event rows of calibration runs feed the online 55Fe gain trend.

The trend (:class:`~agetdaq.readout.analysis.calibfeed.CalibFeed`, handed in by the acquisition)
selects X-ray-like events, fits each closed slice, a live window and a gain map and publishes
them on the stream topic ``calib``; it is active in runs of type "calibration" only and never
raises into the data path (its errors are counted). This stage drives it: the monitor feed, which
drives one itself when the GUI replays a run file, gets :class:`NoTrend` in the DAQ. Counts what
the trend published and the batches it failed on.
"""

from __future__ import annotations

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.stage import RunState, Stage


class Calibration(Stage):
    name = "calibration"
    needs = ("rows",)

    def begin_run(self, run: RunState) -> None:
        if self.context.calib is not None:
            self.context.calib.begin_run(run.number, run.type)

    def process(self, batch: Batch) -> None:
        calib = self.context.calib
        if calib is not None and calib.active:
            calib.on_rows(batch.rows)
        self.emit(batch)

    def tick(self) -> None:
        if self.context.calib is not None:
            self.context.calib.tick()

    def end_run(self) -> None:
        if self.context.calib is not None:
            self.context.calib.close_run()

    def counters(self) -> dict[str, int]:
        calib = self.context.calib
        names = ("published", "published_live", "published_maps", "errors")
        return {k: int(getattr(calib, k)) for k in names if hasattr(calib, k)}


class NoTrend:
    """A 55Fe trend that does nothing: for a monitor feed that would otherwise drive its own
    while the calibration stage drives the real one."""

    active = False

    def begin_run(self, run_number: int, run_type: str) -> None:
        pass

    def on_rows(self, rows: object) -> None:
        pass

    def tick(self) -> None:
        pass

    def close_run(self) -> None:
        pass
