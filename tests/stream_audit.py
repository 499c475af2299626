"""A second subscriber to the monitoring stream that checks every frame against docs/STREAM.md
(``readout.transport.streamcheck``) in a thread of its own, for scenario tests and tools (test
helper, no pytest). ``record=True`` also keeps the summaries' clocks and the calib messages."""

from __future__ import annotations

import threading

import numpy as np
import zmq

from agetdaq.readout.transport.streamcheck import StreamAudit


class AuditSubscriber(threading.Thread):
    """Every frame of the stream at ``address`` through :class:`StreamAudit` (``.audit``); with
    ``record``, ``.clock`` holds (card ticks, host s) of every summary and ``.calib`` the header
    of every calib message. ``start()``, then ``close()`` (joins, closes the socket)."""

    def __init__(self, address: str, record: bool = True) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(address)
        self.audit = StreamAudit()
        self.record = record
        self.clock: list[tuple[np.ndarray, np.ndarray]] = []  # (card ticks, host s)
        self.calib: list[dict] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if not self.sock.poll(100):
                continue
            msg = self.audit.feed(self.sock.recv_multipart())
            if msg is None or not self.record:
                continue
            if msg.topic == "summary" and len(msg.arrays["timestamp"]):
                self.clock.append((msg.arrays["timestamp"], msg.arrays["time_s"]))
            elif msg.topic == "calib":
                self.calib.append(msg.header)

    def close(self) -> None:
        self.done.set()
        self.join(5)
        self.sock.close(linger=0)
        self.ctx.term()
