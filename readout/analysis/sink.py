"""Where the monitor feed's messages go: the DAQ's ZeroMQ Publisher, or a sink in the same process.

:class:`MessageSink` is all that MonitorFeed and CalibFeed need: ``publish(topic, payload,
arrays)``, never blocking, True when the message left. The DAQ hands them its
:class:`~agetdaq.readout.transport.stream.Publisher`. :class:`LocalSink` is the other one (the
GUI's replay): it numbers messages per topic as a Publisher does, passes them through the same
wire encoding and decoding, so a receiver gets exactly what a subscriber would get (JSON header,
copies of the arrays), and hands each to a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from agetdaq.readout.transport.stream import Message, decode_message, encode_message


class MessageSink(Protocol):
    """What the feeds publish on (agetdaq.readout.transport.stream.Publisher is one)."""

    def publish(
        self,
        topic: str,
        payload: Mapping[str, object] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> bool: ...


class LocalSink:
    """Delivers messages in-process, numbered and encoded as on the stream (see the module doc).

    ``clock`` gives the header ``time`` (unix s); by default the wall clock, as a Publisher.
    """

    def __init__(
        self,
        deliver: Callable[[Message], None],
        source: str = "local",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.deliver = deliver
        self.source = source
        self.clock = clock
        self.seq: dict[str, int] = {}
        self.sent = 0

    def publish(
        self,
        topic: str,
        payload: Mapping[str, object] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> bool:
        seq = self.seq.get(topic, 0)
        self.seq[topic] = seq + 1
        msg = decode_message(encode_message(topic, seq, payload or {}, arrays or {}, self.source))
        if self.clock is not None:
            msg.header["time"] = float(self.clock())
        self.deliver(msg)
        self.sent += 1
        return True


class Collect(LocalSink):
    """A LocalSink that keeps every message in ``messages`` (tests, tools)."""

    def __init__(self, source: str = "local", clock: Callable[[], float] | None = None) -> None:
        self.messages: list[Message] = []
        super().__init__(self.messages.append, source, clock)

    def topic(self, name: str) -> list[Message]:
        return [m for m in self.messages if m.topic == name]
