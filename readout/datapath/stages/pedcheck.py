"""Stage ``pedcheck``: do the pedestals in use fit the data? Said within seconds of a run's start.

In the runs of ``run_types`` every strip row of the processed events gives an estimate of the
strip's baseline (:mod:`~agetdaq.readout.datapath.processing.pedcheck`: the pre-trigger mean of a
complete row, the first sample of a zero-suppressed one) against the baseline the processing
subtracts. Every ``interval_s`` the strips with at least ``min_rows`` estimates are judged: a strip
is off when the median of its last estimates is more than ``k_sigma`` noise sigmas (and
``min_adc``) away. When at least ``min_strips`` and ``min_fraction`` of the strips judged are off,
the run gets a notice (``run.notices``: the acquisition logs it, makes it the status message the
monitor shows, and the status rows of the run file keep it), once per run. Dead, noisy and masked
strips are not judged. Counts the rows read, the strips judged and off, and the offsets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from agetdaq.readout.config import setting
from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.processing.pedcheck import baseline_offsets, offsets
from agetdaq.readout.datapath.stage import PathContext, PipelineError, RunState, Stage


@dataclass(frozen=True)
class PedCheckOptions:
    run_types: tuple[str, ...] = setting(
        ("calibration", "background"), "run types checked (pedestal runs measure, not check)"
    )
    depth: int = setting(32, "estimates kept per strip (median over them)", lo=1, hi=4096)
    min_rows: int = setting(8, "estimates a strip needs before it is judged", lo=1, hi=4096)
    k_sigma: float = setting(3.0, "off: |median offset| > k_sigma x the strip's noise", gt=0.0)
    min_adc: float = setting(5.0, "... and > this", lo=0.0, unit="ADC")
    min_strips: int = setting(3, "a notice needs at least this many strips off", lo=1)
    min_fraction: float = setting(0.05, "... and this share of the strips judged", lo=0.0, hi=1.0)
    interval_s: float = setting(0.5, "judge at most this often", gt=0.0, unit="s")

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_types", tuple(self.run_types))


class PedCheck(Stage):
    name = "pedcheck"
    needs = ("built",)
    Options = PedCheckOptions

    def __init__(self, context: PathContext, options: PedCheckOptions | None = None) -> None:
        super().__init__(context, options)
        if context.processor is None:
            raise PipelineError("stage 'pedcheck' needs a processor (none was given)")
        self.processor = context.processor
        self.layout = context.layout
        n = self.layout.n_strips
        self.vals = np.zeros((n, self.options.depth), np.float32)
        self.count = np.zeros(n, np.int64)
        self.active = False
        self.noticed = False
        self._next = 0.0
        self._figures: dict[str, float | int] = {}

    def begin_run(self, run: RunState) -> None:
        self.active = run.type in self.options.run_types
        self.count[:] = 0
        self.noticed = False
        self._next = time.monotonic() + self.options.interval_s
        self._figures = {}

    def process(self, batch: Batch) -> None:
        if self.active and not batch.shed and len(batch):
            self._add(batch)
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.options.interval_s
                self.judge()
        self.emit(batch)

    def _add(self, batch: Batch) -> None:
        f = batch.flat_rows()
        base, _ = self.processor.fill_values()
        b0, b1 = self.processor.config.window
        baseline_offsets(
            f.chan_start, f.n_chan, f.card, f.chip, f.channel, f.sample_start, f.n_samples,
            f.bins, f.adc, self.layout.lut, base, b0, b1, self.vals, self.count,
        )  # fmt: skip

    def judge(self) -> str | None:
        """Judge the strips seen enough; the notice (also put in ``run.notices``) or None."""
        o = self.options
        table = self.processor.table
        off_by = offsets(self.vals, self.count)
        judged = (self.count >= o.min_rows) & ~(table.dead | table.noisy)
        if not judged.any():
            return None
        limit = np.maximum(o.k_sigma * table.noise, o.min_adc)
        off = judged & (np.abs(off_by) > limit)
        n_judged, n_off = int(judged.sum()), int(off.sum())
        self._figures = {
            "strips_judged": n_judged,
            "strips_off": n_off,
            "median_offset_adc": round(float(np.median(off_by[judged])), 2),
            "largest_offset_adc": round(float(np.max(np.abs(off_by[judged]))), 2),
        }
        if self.noticed or n_off < max(o.min_strips, o.min_fraction * n_judged):
            return None
        self.noticed = True
        a = np.abs(off_by[off])
        flat = " (no pedestal table loaded: flat defaults)" if not np.any(table.count) else ""
        message = (
            f"pedestals do not fit the data: {n_off} of {n_judged} strips sit "
            f"{a.min():.0f}-{a.max():.0f} ADC from the baselines in use (median "
            f"{np.median(off_by[off]):+.0f} ADC){flat}; take a pedestal run of the board as it is "
            "now (agetdaq pedestal -o PED.h5 --upload) or give the table that fits it "
            "(--pedestals PED.h5)"
        )
        self.run.notices.append(message)
        return message

    def end_run(self) -> None:
        if self.active:
            self.judge()

    def warm_up(self, batch: Batch) -> None:
        if batch.built is not None:
            self._add(batch)
            self.count[:] = 0

    def counters(self) -> dict[str, float | int]:
        return {"rows": int(self.count.sum()), **self._figures}
