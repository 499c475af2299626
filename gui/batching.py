"""Worker-side bookkeeping of stream messages (no Qt): sequence gaps and batch coalescing.

The worker drains its socket continuously and hands the GUI one batch at a time. While the GUI
is busy, messages wait in a ``Coalescer`` that keeps memory bounded: summaries of the same run are
concatenated (the oldest rows dropped beyond a cap), only the newest sampled ``event`` and ``hist``
are kept, and the remaining topics are kept up to a count.
"""

from __future__ import annotations

import numpy as np

from agetdaq.gui.model import LinkInfo
from agetdaq.readout.transport.stream import Message

_KEEP_LAST = ("event", "hist", "pedestal")
_MAX_KEPT = 4096  # status / calib / other messages waiting for the GUI


class SeqTracker:
    """Per (source, topic) sequence numbers: gaps (missed messages) and DAQ restarts."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}

    def observe(self, msg: Message, link: LinkInfo) -> None:
        seq = msg.seq
        if seq < 0:
            return
        key = (str(msg.header.get("source", "")), msg.topic)
        prev = self.last.get(key)
        self.last[key] = seq
        if prev is None:
            return
        if seq > prev + 1:
            missed = seq - prev - 1
            link.gaps += missed
            link.gaps_by_topic[msg.topic] = link.gaps_by_topic.get(msg.topic, 0) + missed
        elif seq <= prev:
            link.restarts += 1  # the publisher started again from 0


class Coalescer:
    """Messages waiting for the GUI, merged so that memory stays bounded."""

    def __init__(self, max_summary_rows: int = 1_000_000) -> None:
        self.max_summary_rows = max_summary_rows
        self.pending: list[Message] = []
        self.dropped_events = 0
        self.dropped_rows = 0
        self.dropped_other = 0

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, msg: Message) -> None:
        if msg.topic == "summary" and self._merge_summary(msg):
            return
        if msg.topic in _KEEP_LAST:
            for i, old in enumerate(self.pending):
                if old.topic == msg.topic and _same_source(old, msg):
                    del self.pending[i]
                    if msg.topic == "event":
                        self.dropped_events += 1
                    break
        elif msg.topic != "summary" and len(self.pending) >= _MAX_KEPT:
            self.dropped_other += 1
            return
        self.pending.append(msg)

    def _merge_summary(self, msg: Message) -> bool:
        for old in reversed(self.pending):
            if old.topic != "summary":
                continue
            same = (
                _same_source(old, msg)
                and old.header.get("run_number") == msg.header.get("run_number")
                and old.arrays.keys() == msg.arrays.keys()
                and all(old.arrays[k].dtype == msg.arrays[k].dtype for k in old.arrays)
            )
            if not same:
                return False
            merged = {k: np.concatenate((old.arrays[k], msg.arrays[k])) for k in old.arrays}
            n = max((len(v) for v in merged.values()), default=0)
            if n > self.max_summary_rows:
                cut = n - self.max_summary_rows
                merged = {k: v[cut:] for k, v in merged.items()}
                self.dropped_rows += cut
                n = self.max_summary_rows
            header = dict(msg.header)
            header["n"] = n
            old.header = header
            old.arrays = merged
            return True
        return False

    def take(self) -> list[Message]:
        out, self.pending = self.pending, []
        return out


def _same_source(a: Message, b: Message) -> bool:
    return a.header.get("source") == b.header.get("source")
