"""Worker threads that feed the GUI: the live ZeroMQ stream (and the base shared with replay).

A worker owns its source, never blocks the DAQ (a SUB socket only reads; PUB drops for a slow
reader) and never blocks the GUI: it emits ``batch`` (a list of
``agetdaq.readout.transport.stream.Message`` with numpy arrays) at most every ``batch_s`` and only
while the GUI has fewer than ``max_backlog`` batches unprocessed; meanwhile messages are coalesced
(gui/batching.py). ``link`` reports the connection health (``agetdaq.gui.model.LinkInfo``) a few
times per second.
"""

from __future__ import annotations

import copy
import time

import zmq
from PyQt6.QtCore import QThread, pyqtSignal
from zmq.utils.monitor import recv_monitor_message

from agetdaq.gui.batching import Coalescer, SeqTracker
from agetdaq.gui.model import LinkInfo
from agetdaq.readout.transport.stream import Message, Subscriber

LINK_PERIOD_S = 0.25


class SourceWorker(QThread):
    """Base of the stream and replay workers: batching, backlog and link reporting."""

    batch = pyqtSignal(int, object)  # (slot, list[Message])
    link = pyqtSignal(int, object)  # (slot, LinkInfo: a copy owned by the receiver)

    def __init__(self, address: str, batch_s: float = 0.05, max_backlog: int = 4) -> None:
        super().__init__()
        self.slot = 0  # the window's index of this source, sent with every signal
        self.address = address
        self.batch_s = batch_s
        self.max_backlog = max_backlog
        self.info = LinkInfo(address)
        self.coalescer = Coalescer()
        self.tracker = SeqTracker()
        self._stop = False
        self._emitted = 0
        self._acked = 0
        self._batch_start: float | None = None
        self._next_link = 0.0

    def stop(self, wait_ms: int = 3000) -> None:
        """Ask the thread to finish and wait for it."""
        self._stop = True
        self.wait(wait_ms)

    def run(self) -> None:
        """A source that never sends (subclasses read a stream or a file); reports its link."""
        self.info.state = "idle"
        while not self._stop:
            self._emit_link(time.monotonic())
            self.msleep(20)

    def acknowledge(self) -> None:
        """Called by the GUI thread when it has processed one batch."""
        self._acked += 1

    @property
    def backlog(self) -> int:
        return self._emitted - self._acked

    def _accept(self, msg: Message, now: float) -> None:
        self.tracker.observe(msg, self.info)
        self.info.received += 1
        self.info.last_rx = now
        if self._batch_start is None:
            self._batch_start = now
        self.coalescer.add(msg)

    def _maybe_emit(self, now: float, force: bool = False) -> None:
        if not len(self.coalescer) or self._batch_start is None:
            return
        # an idle GUI gets each message at once (latency); a busy one gets merged batches
        due = force or self.backlog == 0 or now - self._batch_start >= self.batch_s
        if due and self.backlog < self.max_backlog:
            self._emitted += 1
            self._batch_start = None
            self.batch.emit(self.slot, self.coalescer.take())

    def _emit_link(self, now: float, force: bool = False) -> None:
        if force or now >= self._next_link:
            self._next_link = now + LINK_PERIOD_S
            self.info.viewer_dropped = self.coalescer.dropped_events
            self.link.emit(self.slot, copy.deepcopy(self.info))


class StreamWorker(SourceWorker):
    """Subscribes to a DAQ's monitoring stream; ZeroMQ reconnects by itself after an outage."""

    def __init__(
        self,
        address: str,
        stale_after_s: float = 3.0,
        batch_s: float = 0.05,
        max_backlog: int = 4,
        context: zmq.Context | None = None,
    ) -> None:
        super().__init__(address, batch_s, max_backlog)
        self.stale_after_s = stale_after_s
        self.context = context

    def _state(self, connected: bool, ever: bool, now: float) -> str:
        if not connected:
            return "disconnected" if ever else "connecting"
        return "stale" if now - self.info.last_rx > self.stale_after_s else "connected"

    def run(self) -> None:
        sub = Subscriber(self.address, context=self.context or zmq.Context.instance())
        sub.socket.setsockopt(zmq.RECONNECT_IVL, 200)
        sub.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        try:
            mon = sub.socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        except zmq.ZMQError:
            mon = None  # transport without monitoring: trust the data age alone
        poller = zmq.Poller()
        poller.register(sub.socket, zmq.POLLIN)
        if mon is not None:
            poller.register(mon, zmq.POLLIN)
        connected, ever = mon is None, mon is None
        self.info.last_rx = time.monotonic()
        try:
            while not self._stop:
                ready = dict(poller.poll(20))
                now = time.monotonic()
                if mon is not None and mon in ready:
                    while mon.poll(0):
                        event = recv_monitor_message(mon)["event"]
                        if event == zmq.EVENT_CONNECTED and ever and not connected:
                            self.info.reconnects += 1
                            self.tracker.last.clear()  # the outage is no sequence gap
                        connected = event == zmq.EVENT_CONNECTED
                        ever = ever or connected
                if sub.socket in ready:
                    for _ in range(1000):  # drain, but come back to emit and report
                        msg = sub.recv(0)
                        if msg is None:
                            if not sub.socket.poll(0):
                                break
                            continue
                        connected = ever = True
                        self._accept(msg, now)
                self.info.malformed = sub.malformed
                self.info.state = self._state(connected, ever, now)
                self._maybe_emit(now)
                self._emit_link(now)
        finally:
            if mon is not None:
                sub.socket.disable_monitor()
                mon.close(linger=0)
            sub.close()
            self.info.state = "closed"
            self._emit_link(time.monotonic(), force=True)
