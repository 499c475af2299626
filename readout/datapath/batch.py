"""The batch that flows through the data path's stages.

A batch starts as views of up to ``batch`` datagrams in the link's ring (``raw``); each stage reads
the fields it needs and fills the ones it adds (see the stage list in
:mod:`agetdaq.readout.datapath`). Everything in it is a numpy table over the batch's events, never
per-event Python objects. Fields a new stage computes go into ``extra`` under the stage's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agetdaq.protocol.decode import DecodedBatch
from agetdaq.readout.datapath.build import BuiltBatch, select_events
from agetdaq.readout.datapath.processing.pipeline import Processed
from agetdaq.readout.datapath.processing.waveforms import DenseBatch, FlatBatch
from agetdaq.readout.link.receiver import Batch as RingBatch


@dataclass(slots=True, eq=False)
class Batch:
    """What the stages pass on; a field is None until a stage fills it."""

    time_ns: int  # wall-clock time the batch was taken (the event rows' ``time_ns``)
    raw: RingBatch | None = None  # ring views (buf, lengths, arrival_ns), valid until released
    release: Callable[[int], None] | None = None  # gives the ring slots of ``raw`` back
    decoded: DecodedBatch | None = None  # decode: events closed in these datagrams
    built: BuiltBatch | None = None  # build: checked events with DAQ ids and build flags
    flat: FlatBatch | None = None  # the channel rows of ``built`` for the kernels (flat_rows())
    shed: bool = False  # shed: record these events without processing them (NOT_PROCESSED)
    dense: DenseBatch | None = None  # process: dense waveforms (None when shed)
    processed: Processed | None = None  # process: features, hits, waveforms (None when shed)
    rows: np.ndarray | None = None  # rows: the run file's event-table rows
    extra: dict[str, Any] = field(default_factory=dict)  # added stages' results, by stage name

    def __len__(self) -> int:
        """Events in the batch (0 before the build)."""
        return len(self.built) if self.built is not None else 0

    def release_raw(self) -> None:
        """Give the ring slots back (once); ``raw`` is gone from here on."""
        if self.raw is not None:
            if self.release is not None:
                self.release(len(self.raw.lengths))
            self.raw = None

    def flat_rows(self) -> FlatBatch:
        """The channel rows of the built events as the kernels take them (views, made once)."""
        if self.flat is None:
            self.flat = FlatBatch.from_decoded(self.built.decoded)
        return self.flat

    def part(self, a: int, z: int) -> Batch:
        """Events ``a:z`` of a built batch as a batch of their own (channel tables copied; the
        whole batch is itself). A part carries the built events and the shed decision: the
        fields after them are made per part."""
        built = self.built
        n = len(built)
        if (a, z) == (0, n):
            return self
        keep = np.zeros(n, dtype=bool)
        keep[a:z] = True
        sub = BuiltBatch(
            select_events(built.decoded, keep), built.event_id[a:z], built.build_flags[a:z]
        )
        f = self.flat_rows()
        flat = FlatBatch(
            f.chan_start[a:z], f.n_chan[a:z], f.card, f.chip, f.channel, f.sample_start,
            f.n_samples, f.bins, f.adc,
        )  # fmt: skip
        return Batch(self.time_ns, built=sub, flat=flat, shed=self.shed)
