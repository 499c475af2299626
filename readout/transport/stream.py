"""The monitoring stream: numbered ZeroMQ PUB messages of a JSON header plus numpy buffers.

Wire form of one message (multipart): ``[topic, header, buf0, buf1, ...]`` where ``header`` is
UTF-8 JSON with ``seq`` (per topic, from 0), ``time`` (unix s), ``source`` (detector name) and
``arrays``: a list of ``{"name", "dtype", "shape"}`` describing the buffers in order. Never pickle.
The stream is not the record: PUB drops for slow subscribers by design, so the publisher never
blocks (the writer never waits for a viewer) and the subscriber reports gaps in ``seq``.

One owner per socket: a ZeroMQ socket is not thread-safe, and the DAQ publishes from several
threads (status and run control, the data path's monitor and calibration feeds). A
:class:`Publisher` therefore numbers, encodes and sends each message under one lock: frames of two
messages never interleave and ``seq`` grows in the order messages leave. The lock is held for the
encoding and the (non-blocking, copying) send of one message, well under a millisecond even for
an event's waveforms, so the data path never waits for long.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import zmq

MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 64


class StreamError(ValueError):
    """A malformed stream message."""


@dataclass
class Message:
    topic: str
    header: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return int(self.header.get("seq", -1))


def encode_message(
    topic: str,
    seq: int,
    payload: Mapping[str, object],
    arrays: Mapping[str, np.ndarray],
    source: str,
) -> list[bytes | memoryview]:
    """Frames of one message (see the module docstring)."""
    header = dict(payload)
    header.update(seq=seq, time=time.time(), source=source, topic=topic)
    descr = []
    bufs: list[bytes | memoryview] = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.hasobject:
            raise StreamError(f"array {name!r} has object dtype")
        descr.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
        bufs.append(memoryview(a).cast("B") if a.size else b"")
    header["arrays"] = descr
    return [topic.encode(), json.dumps(header, default=_json_default).encode(), *bufs]


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def decode_message(frames: list[bytes]) -> Message:
    """Parse and validate one multipart message; raises StreamError on anything malformed."""
    if len(frames) < 2:
        raise StreamError("message has fewer than 2 frames")
    topic = bytes(frames[0]).decode(errors="replace")
    raw = bytes(frames[1])
    if len(raw) > MAX_HEADER_BYTES:
        raise StreamError("header too large")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StreamError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise StreamError("header is not a JSON object")
    descr = header.get("arrays", [])
    if not isinstance(descr, list) or len(descr) > MAX_ARRAYS or len(descr) != len(frames) - 2:
        raise StreamError("array descriptions do not match the buffers")
    arrays: dict[str, np.ndarray] = {}
    for d, buf in zip(descr, frames[2:]):
        try:
            dtype = np.dtype(str(d["dtype"]))
            shape = tuple(int(n) for n in d["shape"])
            name = str(d["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StreamError(f"bad array description {d!r}") from exc
        if dtype.hasobject or any(n < 0 for n in shape):
            raise StreamError(f"bad array description {d!r}")
        data = bytes(buf)
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise StreamError(f"array {name!r}: {len(data)} bytes do not fit {shape} {dtype}")
        arrays[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return Message(topic, header, arrays)


class Publisher:
    """PUB socket that never blocks and may be used from any thread (see the module docstring);
    counts what it sends and what ZeroMQ refused."""

    def __init__(
        self,
        address: str,
        source: str = "babyiaxo",
        hwm: int = 1000,
        context: zmq.Context | None = None,
    ) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.source = source
        self.seq: dict[str, int] = {}
        self.sent = 0
        self.dropped = 0
        self._lock = threading.Lock()  # the socket's one owner is whoever holds it
        self._closed = False

    def publish(
        self,
        topic: str,
        payload: Mapping[str, object] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> bool:
        """Number, encode and send one message; False when it was dropped (or after close)."""
        with self._lock:
            if self._closed:
                self.dropped += 1
                return False
            seq = self.seq.get(topic, 0)
            self.seq[topic] = seq + 1
            frames = encode_message(topic, seq, payload or {}, arrays or {}, self.source)
            try:
                # copy=True: ZeroMQ owns copies, so a message queued for a slow or dead
                # subscriber never keeps (or shows later changes of) the caller's arrays
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=True)
            except zmq.Again:
                self.dropped += 1
                return False
            self.sent += 1
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.socket.close(linger=0)


class Subscriber:
    """SUB socket with per-topic gap accounting; recv() never raises on bad messages."""

    def __init__(
        self,
        address: str,
        topics: tuple[str, ...] = ("",),
        hwm: int = 1000,
        context: zmq.Context | None = None,
    ) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.socket.connect(address)
        self.address = address
        self.last_seq: dict[tuple[str, str], int] = {}
        self.gaps = 0
        self.malformed = 0
        self.received = 0
        self.last_time = 0.0

    def recv(self, timeout_ms: int = 100) -> Message | None:
        """Next valid message, or None after ``timeout_ms`` without one."""
        if not self.socket.poll(timeout_ms):
            return None
        frames = self.socket.recv_multipart()
        try:
            msg = decode_message(frames)
        except StreamError:
            self.malformed += 1
            return None
        self.received += 1
        self.last_time = time.monotonic()
        key = (str(msg.header.get("source", "")), msg.topic)
        prev = self.last_seq.get(key)
        if prev is not None and msg.seq > prev + 1:
            self.gaps += msg.seq - prev - 1
        self.last_seq[key] = msg.seq
        return msg

    def close(self) -> None:
        self.socket.close(linger=0)
