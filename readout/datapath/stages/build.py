"""Stage ``build``: decoded events -> built events (DAQ id and build flags per event).

Checks the card's event counter and timestamp (:class:`~agetdaq.readout.datapath.build.
EventBuilder`): counts missing, late, duplicate, out-of-order, damaged and incomplete events and
board restarts; drops duplicates (and, if asked, damaged events), counted. With ``check_chips``
every event must hold every chip the strip mapping uses (full readout only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.build import BuilderConfig, EventBuilder
from agetdaq.readout.datapath.stage import PathContext, PathCounters, RunState, Stage


@dataclass(frozen=True)
class BuildOptions:
    check_chips: bool = False  # flag events without every chip of the mapping INCOMPLETE
    keep_duplicates: bool = False
    drop_damaged: bool = False  # drop decoder-flagged events instead of flagging them


class Build(Stage):
    name = "build"
    needs = ("decoded",)
    adds = ("built",)
    Options = BuildOptions

    def __init__(self, context: PathContext, options: BuildOptions | None = None) -> None:
        super().__init__(context, options)
        o = self.options
        self.config = BuilderConfig(
            expected_chips=tuple(int(c) for c in np.unique(context.layout.chip)),
            check_chips=o.check_chips,
            keep_duplicates=o.keep_duplicates,
            drop_damaged=o.drop_damaged,
        )
        self.builder = EventBuilder(self.config)
        self.last_signals = 0

    def begin_run(self, run: RunState) -> None:
        self.builder = EventBuilder(self.config)
        self.last_signals = 0

    def process(self, batch: Batch) -> None:
        built = self.builder.build(batch.decoded)
        if len(built):
            self.last_signals = int(built.decoded.n_channels[-1])
            batch.built = built
            self.emit(batch)

    def warm_up(self, batch: Batch) -> None:
        if batch.decoded is not None:
            batch.built = EventBuilder(self.config).build(batch.decoded)

    def counters(self) -> dict[str, int]:
        return self.builder.counters.as_dict()

    def add_totals(self, totals: PathCounters) -> None:
        totals.events += self.builder.counters.events_out
        totals.restarts += self.builder.counters.restarts
        totals.last_signals = self.last_signals
