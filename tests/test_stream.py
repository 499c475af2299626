"""Monitoring stream: message schema, numbering, gaps, malformed input, never blocking."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from agetdaq.readout.transport.stream import (
    Publisher,
    StreamError,
    Subscriber,
    decode_message,
    encode_message,
)


def test_encode_decode_round_trip():
    arrays = {"hitmap": np.arange(12, dtype=np.float32).reshape(3, 4), "empty": np.zeros(0)}
    frames = [bytes(f) for f in encode_message("hist", 5, {"run": 3}, arrays, "det1")]
    msg = decode_message(frames)
    assert msg.topic == "hist" and msg.seq == 5 and msg.header["run"] == 3
    assert msg.header["source"] == "det1"
    np.testing.assert_array_equal(msg.arrays["hitmap"], arrays["hitmap"])
    assert msg.arrays["empty"].shape == (0,)


def _header(*arrays: dict) -> bytes:
    return json.dumps({"arrays": list(arrays)}).encode()


@pytest.mark.parametrize(
    "frames",
    [
        [b"status"],
        [b"status", b"not json"],
        [b"status", b"[1, 2]"],
        [
            b"x",
            json.dumps({"arrays": [{"name": "a", "dtype": "<f4", "shape": [3]}]}).encode(),
            b"12",
        ],
        [b"x", json.dumps({"arrays": [{"name": "a", "dtype": "|O", "shape": [1]}]}).encode(), b"1"],
        [b"x", json.dumps({"arrays": [{"name": "a"}]}).encode(), b""],
    ],
)
def test_malformed_messages_raise_stream_error(frames):
    with pytest.raises(StreamError):
        decode_message(frames)


def test_publisher_numbers_messages_and_subscriber_counts_gaps():
    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", source="d", context=ctx)
    sub = Subscriber(pub.address, topics=("status",), context=ctx)
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:  # slow joiner: publish until one arrives
        pub.publish("status", {"x": 1})
        got = sub.recv(50)
    assert got is not None
    while sub.recv(50) is not None:
        pass
    first = pub.seq["status"]
    pub.seq["status"] = first + 3  # three messages lost on the way
    pub.publish("status", {"x": 2})
    msg = sub.recv(2000)
    assert msg is not None and msg.seq == first + 3
    assert sub.gaps == 3
    pub.close()
    sub.close()
    ctx.term()


def test_publisher_never_blocks_without_subscribers():
    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", hwm=10, context=ctx)
    big = np.zeros(100_000, np.uint16)
    t0 = time.monotonic()
    for _ in range(200):
        pub.publish("event", {}, {"w": big})
    assert pub.sent + pub.dropped == 200
    assert time.monotonic() - t0 < 30  # sanity bound only: a blocking PUB would hang forever
    pub.close()
    ctx.term()
