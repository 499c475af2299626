"""The receiver of one board socket: a capture loop, the ring it fills and the reply queue.

Enters: the board socket's datagrams. Leaves: data frames as ring batches
(:meth:`Receiver.get_batch` / :meth:`Receiver.release`), replies (:meth:`Receiver.get_reply`), frame
credit to the ``sink``. Counts: every datagram, by where it went or why it was dropped
(:attr:`Receiver.counters`), and the kernel's drops on the socket (:meth:`Receiver.kernel_drops`).

:class:`Receiver` wires three collaborators and is what the data path and the command channel see:

* :class:`~agetdaq.readout.link.capture.CaptureLoop` -- the capture thread: owns the socket's reads,
  sorts datagrams with the board type's classifier, counts everything, drives the credit loop;
* :class:`~agetdaq.readout.link.ring.Ring` -- data frames, handed to the consumer as
  :class:`~agetdaq.readout.link.ring.Batch` views (:meth:`Receiver.get_batch` /
  :meth:`Receiver.release`);
* :class:`~agetdaq.readout.link.replies.ReplyQueue` -- command replies and monitoring frames.

The socket is the caller's (:func:`open_board_socket`): one per board, connected so the kernel
filters other senders; it also sends commands and credit requests. A credit loop given as ``sink``
is attached to the ring (its fill and capacity, and the consumer's releases for back-pressure).
"""

from __future__ import annotations

import socket
import threading

from agetdaq.readout.link.board import Board, board_type
from agetdaq.readout.link.capture import (  # noqa: F401 - re-exported: the receiver's public API
    CAPTURE_SWITCH_INTERVAL_S,
    CaptureLoop,
    FrameSink,
    Tap,
)
from agetdaq.readout.link.counters import ReceiverCounters, kernel_drops
from agetdaq.readout.link.feminos import MAX_DATAGRAM
from agetdaq.readout.link.replies import RawReply, ReplyQueue
from agetdaq.readout.link.ring import Batch, Ring
from agetdaq.readout.link.udp import (  # noqa: F401 - re-exported: the receiver's public API
    DEFAULT_RCVBUF,
    SO_RCVBUFFORCE,
    RcvbufReport,
    open_board_socket,
    read_rmem_max,
    set_rcvbuf,
)

__all__ = ["Batch", "RawReply", "Receiver", "open_board_socket"]

DEFAULT_SLOTS = 4096
DEFAULT_BATCH = 64
DEFAULT_SLOT_SIZE = MAX_DATAGRAM  # the default board type's largest datagram


class Receiver:
    """Capture loop + ring + reply queue for one board socket (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        n_slots: int = DEFAULT_SLOTS,
        slot_size: int | None = None,
        sink: FrameSink | None = None,
        check_frames: bool = True,
        reply_queue_size: int = 256,
        idle_s: float = 0.1,
        from_host: str | None = None,
        wake_at: int = 16,
        name: str = "bec",
        batch_size: int = DEFAULT_BATCH,
        board: Board | str | None = None,
    ) -> None:
        self.board = board_type(board)
        self.ring = Ring(n_slots, slot_size or self.board.max_datagram, wake_at)
        self.replies = ReplyQueue(reply_queue_size)
        self.capture = CaptureLoop(
            sock,
            self.ring,
            self.replies,
            self.board.classifier(self.ring.buf, check_frames),
            batch_scan=self.board.batch_scan,
            check_frames=check_frames,
            sink=sink,
            idle_s=idle_s,
            from_host=from_host,
            batch_size=batch_size,
            name=name,
        )
        self._sock = sock
        self.name = name
        if sink is not None:
            sink.attach_ring(self.ring.fill, n_slots)
            self.ring.on_release = sink.on_release

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Receiver:
        self.capture.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the capture thread (the socket stays open; its owner closes it)."""
        self.capture.stop(timeout)

    @property
    def running(self) -> bool:
        return self.capture.running

    @property
    def thread(self) -> threading.Thread | None:
        """The capture thread while it runs (for its CPU time)."""
        return self.capture.thread

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what the capture loop saw -----------------------------------------------------------
    @property
    def counters(self) -> ReceiverCounters:
        return self.capture.counters

    @property
    def tap(self) -> Tap | None:
        return self.capture.tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        """Every datagram received, to ``tap("rx", payload view, monotonic ns)``; set before
        :meth:`start`."""
        self.capture.tap = tap

    # ---- consumer side (the data path) -------------------------------------------------------
    @property
    def n_slots(self) -> int:
        return self.ring.n_slots

    @property
    def slot_size(self) -> int:
        return self.ring.slot_size

    @property
    def max_fill(self) -> int:
        """Highest ring fill seen (frames)."""
        return self.ring.max_fill

    def fill(self) -> int:
        """Frames in the ring not yet released."""
        return self.ring.fill()

    def get_batch(self, max_n: int = 256, timeout: float | None = 0.1) -> Batch:
        """Up to ``max_n`` contiguous ring slots (:meth:`.ring.Ring.get_batch`)."""
        return self.ring.get_batch(max_n, timeout)

    def release(self, n: int) -> None:
        """Give ``n`` slots (the oldest handed out) back to the capture thread."""
        self.ring.release(n)

    # ---- command channel side ----------------------------------------------------------------
    def get_reply(self, timeout: float | None) -> RawReply | None:
        """Next command reply (or monitoring frame), or None after ``timeout`` s."""
        return self.replies.get(timeout)

    def drain_replies(self) -> list[RawReply]:
        """Remove and return every queued reply (stale replies before a new command)."""
        return self.replies.drain()

    # ---- reporting ---------------------------------------------------------------------------
    def kernel_drops(self) -> int | None:
        return kernel_drops(self._sock)

    def stats(self) -> dict[str, int | None]:
        c = self.counters
        d: dict[str, int | None] = dict(c.as_dict())
        d.update(
            fill=self.fill(),
            max_fill=self.max_fill,
            capacity=self.n_slots,
            malformed=c.malformed,
            kernel_drops=self.kernel_drops(),
        )
        return d
