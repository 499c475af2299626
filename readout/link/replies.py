"""The reply queue: command replies and monitoring frames, from the capture thread to the command
channel (:class:`~agetdaq.readout.link.board_link.BoardLink`).

Enters: reply datagrams copied out of the ring's row by the capture loop. Leaves: :class:`RawReply`
in arrival order. Counts: nothing itself; a full queue refuses the reply (:meth:`ReplyQueue.put`
returns False) and the capture loop counts it in ``reply_queue_drops``.
"""

from __future__ import annotations

import queue
from typing import NamedTuple


class RawReply(NamedTuple):
    """A reply datagram as received (decode it with the board type's ``parse_reply``)."""

    datagram: bytes
    arrival_ns: int


class ReplyQueue:
    """Bounded FIFO of :class:`RawReply`; one producer (capture thread), any consumer."""

    def __init__(self, maxsize: int = 256) -> None:
        self._q: queue.Queue[RawReply] = queue.Queue(maxsize=maxsize)

    def put(self, datagram: bytes, arrival_ns: int) -> bool:
        """Queue a reply; False (not queued) when the queue is full."""
        try:
            self._q.put_nowait(RawReply(datagram, arrival_ns))
        except queue.Full:
            return False
        return True

    def get(self, timeout: float | None) -> RawReply | None:
        """Next reply, or None after ``timeout`` s."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[RawReply]:
        """Remove and return every queued reply."""
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out
