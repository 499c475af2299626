"""Stage ``sequence``: the lead-word sequence numbers of the data datagrams say what the link lost.

Reads the ring views; counts missing, late, duplicate and stray datagrams and board resyncs over
the datagrams the decoder took (its verdicts, known once the batch has come back from the stages
after this one; without a decode stage every datagram counts). Frames the decoder refused (outside
the board's window, or bad as a whole) are counted ``rejected``, never missing or late. Drops
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.stage import RunState, Stage
from agetdaq.readout.datapath.stages.decode import VERDICTS


@dataclass
class SequenceCounters:
    """What the lead-word sequence of the data datagrams in the ring says about the link."""

    missing: int = 0  # sequence numbers that never arrived (network, malformed, ring full)
    late: int = 0  # arrived after a later one (reordered); no longer counted missing
    duplicates: int = 0  # a sequence number received twice
    resyncs: int = 0  # first-reply flags (0x0100): the board restarted its sequence
    stray: int = 0  # behind the sequence but neither missing nor seen (e.g. before a resync)
    rejected: int = 0  # refused by the decoder (stale / forged numbers, bad frames): not counted


_UNKNOWN, _RECEIVED, _MISSING = 0, 1, 2


class SequenceTracker:
    """Classifies every data datagram by its 8-bit sequence number (lead bits 7..0; bit 8 =
    first reply). A number up to 127 ahead of the expected one counts the skipped numbers
    missing; one behind it is late (if it was missing) or a duplicate (if it was seen). A first
    reply that comes right after the datagrams that follow it (the only ones since the last
    restart of the sequence) is late too, not a restart that makes them look missing."""

    def __init__(self) -> None:
        self.counters = SequenceCounters()
        self._state = np.zeros(256, dtype=np.int8)
        self._expect = -1
        self._since_reset = 0  # datagrams taken in order since the state was last reset

    def feed(self, leads: np.ndarray) -> None:
        leads = np.asarray(leads, dtype=np.int64) & 0x1FF
        if not len(leads):
            return
        if self._expect >= 0 and not (leads & 0x100).any():
            want = (self._expect + np.arange(len(leads))) & 0xFF
            if np.array_equal(leads, want):  # the usual case: all in order
                self._state[want] = _RECEIVED
                self._expect = (int(leads[-1]) + 1) & 0xFF
                self._since_reset += len(leads)
                return
        for lead in leads.tolist():
            self._one(lead)

    def _one(self, lead: int) -> None:
        c, st = self.counters, self._state
        seq = lead & 0xFF
        if lead & 0x100 or self._expect < 0:
            c.resyncs += bool(lead & 0x100)
            if lead & 0x100 and self._first_came_late(seq):
                c.late += 1
                st[seq] = _RECEIVED
                return
            st[:] = _UNKNOWN
            self._since_reset = 0
        else:
            ahead = (seq - self._expect) & 0xFF
            if ahead >= 128:
                if st[seq] == _MISSING:
                    c.late += 1
                    c.missing -= 1
                    st[seq] = _RECEIVED
                elif st[seq] == _RECEIVED:
                    c.duplicates += 1
                else:
                    c.stray += 1
                return
            if ahead:
                st[(self._expect + np.arange(ahead)) & 0xFF] = _MISSING
                c.missing += ahead
        st[seq] = _RECEIVED
        self._expect = (seq + 1) & 0xFF
        self._since_reset += 1

    def _first_came_late(self, seq: int) -> bool:
        """Whether the datagrams since the last reset are exactly the ones right after ``seq``."""
        if self._expect < 0 or self._state[seq] == _RECEIVED:
            return False
        n_after = (self._expect - 1 - seq) & 0xFF
        return 0 < n_after == self._since_reset and n_after < 128


class Sequence(Stage):
    """Feeds the lead words of every ring batch to a :class:`SequenceTracker`."""

    name = "sequence"
    needs = ("raw",)

    def __init__(self, context, options=None) -> None:
        super().__init__(context, options)
        self.tracker = SequenceTracker()

    def begin_run(self, run: RunState) -> None:
        self.tracker = SequenceTracker()

    def process(self, batch: Batch) -> None:
        buf = batch.raw.buf
        leads = buf[:, 0].astype(np.int64) | buf[:, 1].astype(np.int64) << 8  # before release
        self.emit(batch)
        verdict = batch.extra.get(VERDICTS)
        if verdict is not None:
            refused = (verdict == dk.V_OUT_OF_WINDOW) | (verdict == dk.V_REJECTED)
            if refused.any():
                self.tracker.counters.rejected += int(refused.sum())
                leads = leads[~refused]
        self.tracker.feed(leads)

    def counters(self) -> dict[str, int]:
        return dict(vars(self.tracker.counters))
