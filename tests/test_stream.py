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


def test_publisher_used_from_several_threads_never_interleaves_messages():
    """The DAQ publishes from run control, the monitor feed and the calibration feed at once: a
    subscriber checking every frame (readout.transport.streamcheck) sees no malformed message and
    no gap (a PUB socket shared without its lock gave hundreds here)."""
    import threading

    from agetdaq.readout import schema as S
    from agetdaq.readout.transport.streamcheck import StreamAudit

    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", source="d", hwm=100_000, context=ctx)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub.address)
    audit = StreamAudit()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # slow joiner
        pub.publish("ping")
        if sub.poll(50):
            sub.recv_multipart()
            break
    pub.seq.clear()
    n = 1500
    ped = {k: np.zeros(8, np.float32) for k in S.PEDESTAL_ARRAYS}
    summary = {k: np.zeros(3) for k in S.SUMMARY_ARRAYS}
    event_header = dict.fromkeys((*S.EVENT_MESSAGE_HEADER, *S.SUMMARY_FIELDS), 0)
    event_header["samples"] = "corrected"
    event = {"waveforms": np.zeros((240, 64), np.float32), "hits": np.zeros(240, bool)}
    jobs = [
        lambda: pub.publish("pedestal", {"run_number": 1, "k_sigma": 5.0}, ped),
        lambda: pub.publish("summary", {"run_number": 1, "n": 3}, summary),
        lambda: pub.publish("event", event_header, event),
    ]
    threads = [threading.Thread(target=lambda j=j: [j() for _ in range(n)]) for j in jobs]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or sub.poll(500):
        if sub.poll(20):
            audit.feed(sub.recv_multipart())
    for t in threads:
        t.join()
    pub.close()
    sub.close(linger=0)
    ctx.term()
    assert audit.per_topic == {"pedestal": n, "summary": n, "event": n}, audit.summary()
    assert audit.malformed == 0 and audit.gaps == 0, audit.problems


def test_stream_audit_checks_every_frame_against_the_contract():
    from agetdaq.readout import schema as S
    from agetdaq.readout.transport.streamcheck import StreamAudit

    audit = StreamAudit()
    good = {"run_number": 1, "n": 1}
    arrays = {k: np.zeros(1) for k in S.SUMMARY_ARRAYS}
    audit.feed([bytes(f) for f in encode_message("summary", 0, good, arrays, "s")])
    assert audit.malformed == 0
    audit.feed([bytes(f) for f in encode_message("summary", 3, good, arrays, "s")])
    assert audit.gaps == 2 and audit.malformed == 0  # seq 1 and 2 never came
    short = dict(arrays)
    short.pop("x_mm")
    audit.feed([bytes(f) for f in encode_message("summary", 4, good, short, "s")])
    audit.feed([bytes(f) for f in encode_message("status", 0, {"state": "running"}, {}, "s")])
    audit.feed([b"summary", b"{}", b"123"])  # a buffer without its description
    assert audit.malformed == 3, audit.problems
    assert "array 'x_mm' missing" in audit.problems[1]
    assert "header lacks 'run_number'" in audit.problems[2]
