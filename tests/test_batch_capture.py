"""Batched capture (recvmmsg + numba frame check), batched credit accounting, the writer's
datagram packing kernel and chunk-aligned appends: kernels against their plain-Python references,
and the receiver's batch path on real sockets (127.0.0.1)."""

from __future__ import annotations

import socket
import struct
import time

import h5py
import numpy as np
import pytest
from fake_board import FakeBoard, dframe
from hypothesis import given
from hypothesis import strategies as st

from agetdaq.readout.link import mmsg
from agetdaq.readout.link.credit import CreditConfig, CreditLoop
from agetdaq.readout.link.receiver import Receiver, open_board_socket
from agetdaq.readout.store.rawpack import pack_raw, pack_raw_ref
from agetdaq.readout.store.writer import RunWriter, WriterConfig

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg needs Linux, 64-bit")

# hand-written (PROTOCOL.md §1.1): lead 0x0005, SOF_D card 0, size 10, two ADC words, EOF
GOLDEN_DFRAME = bytes.fromhex("050000080a00013002300f00")
# CFRAME reply: lead 0, SOF_C, err 0, ASCII_LEN 2, "ok", EOF
GOLDEN_CFRAME = bytes.fromhex("0000000400000201") + b"ok\x00\x00" + bytes.fromhex("0f00")


def _rows(datagrams: list[bytes], slot: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Ring rows holding the datagrams, and mmsghdr lengths as recvmmsg leaves them."""
    buf = np.zeros((len(datagrams) + 1, slot), np.uint8)
    hdr = np.zeros((len(datagrams) + 1) * mmsg.HDR_U32, np.uint32)
    for i, d in enumerate(datagrams):
        buf[i, : min(len(d), slot)] = np.frombuffer(d[:slot], np.uint8)
        hdr[i * mmsg.HDR_U32 + mmsg.LEN_AT] = len(d)
    return buf, hdr


datagram = st.one_of(
    st.just(GOLDEN_DFRAME),
    st.just(GOLDEN_CFRAME),
    st.binary(min_size=0, max_size=80),
    st.builds(lambda n, s: dframe(s, n_body=n), st.integers(0, 20), st.integers(0, 255)),
)


@given(st.lists(datagram, min_size=1, max_size=8), st.booleans())
def test_scan_frames_matches_reference(datagrams, check):
    buf, hdr = _rows(datagrams)
    words = buf.view(np.uint16)
    got_len = np.zeros(len(buf), np.int32)
    ref_len = np.zeros(len(buf), np.int32)
    k = len(datagrams)
    got = mmsg.scan_frames(hdr, words, 0, k, 64, check, got_len)
    want = mmsg.scan_frames_ref(hdr, words, 0, k, 64, check, ref_len)
    assert got == want
    np.testing.assert_array_equal(got_len, ref_len)


def test_scan_frames_golden_cases():
    buf, hdr = _rows([GOLDEN_DFRAME, GOLDEN_DFRAME])
    lengths = np.zeros(3, np.int32)
    assert mmsg.scan_frames(hdr, buf.view(np.uint16), 0, 2, 64, True, lengths) == 24
    assert list(lengths) == [12, 12, 0]
    bad_size = GOLDEN_DFRAME[:4] + b"\x08\x00" + GOLDEN_DFRAME[6:]
    for other in (GOLDEN_CFRAME, bad_size, GOLDEN_DFRAME[:-2] + b"\x00\x00"):
        buf, hdr = _rows([GOLDEN_DFRAME, other])
        assert mmsg.scan_frames(hdr, buf.view(np.uint16), 0, 2, 64, True, lengths) == -1
    buf, hdr = _rows([bad_size])  # unchecked mode keeps a data frame with a wrong size word
    assert mmsg.scan_frames(hdr, buf.view(np.uint16), 0, 1, 64, False, lengths) == 12


def test_multireceiver_reads_a_batch_with_lengths_and_monotonic_stamp():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        tx.connect(rx.getsockname())
        buf = np.zeros((9, 64), np.uint8)
        m = mmsg.MultiReceiver(rx, buf)
        lengths, arrivals = np.zeros(9, np.int32), np.zeros(9, np.int64)
        t_before = time.monotonic_ns()
        for s in range(3):
            tx.send(dframe(s, n_body=3))
        time.sleep(0.05)
        n, nbytes, t = m.recv(2, 8, lengths, arrivals)
        assert (n, nbytes) == (3, 3 * 14)
        assert list(lengths[2:5]) == [14, 14, 14] and t_before <= t <= time.monotonic_ns()
        assert list(arrivals[2:5]) == [t] * 3 and buf[3, 0] == 1
        tx.send(b"x" * 100)  # oversize for a 64-byte row: its real length is reported
        n, nbytes, _ = m.recv(0, 1, lengths, arrivals)
        assert (n, nbytes, m.length(0)) == (1, -1, 100)
        with pytest.raises(BlockingIOError):
            m.recv(0, 8, lengths, arrivals)
    finally:
        rx.close()
        tx.close()


@given(st.lists(st.integers(0, 40), min_size=0, max_size=10), st.sampled_from([48, 47]))
def test_pack_raw_matches_reference(sizes, stride):
    """Word copy (even row stride) and byte copy (odd stride): same bytes, zero padding."""
    rng = np.random.default_rng(len(sizes))
    buf = rng.integers(0, 256, (len(sizes), stride), dtype=np.uint8)
    lengths = np.array(sizes, np.int64)
    total = int(((lengths + 1) // 2).sum()) * 2
    got = np.full(total, 0xAA, np.uint8)
    want = np.full(total, 0xAA, np.uint8)
    pack_raw(buf, lengths, got)
    pack_raw_ref(buf, lengths, want)
    np.testing.assert_array_equal(got, want)


def test_writer_appends_whole_chunks_and_flushes_the_rest(tmp_path):
    dt = np.dtype([("event_id", "<u8")])
    cfg = WriterConfig(chunk_bytes=64, flush_interval_s=3600)  # 8 events rows per chunk
    path = tmp_path / "chunks.h5"
    w = RunWriter(path, dt, config=cfg)
    w.append_events(np.arange(5, dtype=np.uint64).view(dt), *_no_channels())
    assert w.events.written == 0 and w.events.total == 5  # less than a chunk: staged
    w.append_events(np.arange(5, 20, dtype=np.uint64).view(dt), *_no_channels())
    assert w.events.written == 16 and w.events.pending == 4  # two whole chunks went out
    w.close()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["events"]["event_id"], np.arange(20))


def _no_channels():
    from agetdaq.readout import schema as S

    return (np.zeros(0, S.CHANNEL_DTYPE), np.zeros(0, np.uint16), np.zeros(0, np.uint16))


def test_batched_credit_accounting_equals_frame_by_frame():
    leads = [0x105, 6, 7, 9, 10, 11]  # first reply, then a gap of one frame
    sizes = [100, 102, 104, 106, 108, 110]
    for unit in ("F", "B"):
        sent_one, sent_batch = [], []
        one = CreditLoop(sent_one.append, CreditConfig(unit=unit, window=4000, threshold=0))
        batch = CreditLoop(sent_batch.append, CreditConfig(unit=unit, window=4000, threshold=0))
        one.start()
        batch.start()
        for lead, n in zip(leads, sizes):
            one.on_frame(lead, n, 0)
        batch.on_frames(leads, sizes, 0)
        assert one.counters.lost_replies == batch.counters.lost_replies == 1
        assert one.pending == batch.pending == 0
        assert one.counters.credit_sent == batch.counters.credit_sent
        assert len(sent_batch) == 2  # the start, then one request for the whole batch


def test_receiver_batch_path_keeps_order_and_moves_frames_past_a_reply():
    with FakeBoard() as board:
        sock, _ = open_board_socket(board.address, local=("127.0.0.1", 0), rcvbuf=1 << 20)
        rx = Receiver(sock, idle_s=0.02, n_slots=16)
        try:
            assert rx.start().capture.batched
            me = sock.getsockname()
            for s in range(3):
                board.sock.sendto(dframe(s), me)
            board.sock.sendto(GOLDEN_CFRAME, me)
            for s in range(3, 6):
                board.sock.sendto(dframe(s), me)
            deadline = time.monotonic() + 5
            while rx.counters.datagrams < 7 and time.monotonic() < deadline:
                time.sleep(0.005)
            b = rx.get_batch(16, timeout=1.0)
            assert [int(row[0]) for row in b.buf] == [0, 1, 2, 3, 4, 5]
            assert rx.get_reply(1.0).datagram == GOLDEN_CFRAME
            assert rx.max_fill == 6 and rx.stats()["max_fill"] == 6
            rx.release(len(b.lengths))
        finally:
            rx.stop()
            sock.close()


@given(st.integers(0, 0xFFFFFE), st.sampled_from("FB"), st.integers(0, 255))
def test_kernel_request_text_is_the_protocol_encoders(amount, unit, seq):
    from agetdaq.protocol.commands import format_daq_request
    from agetdaq.readout.link.credit_kernel import format_request

    out = np.zeros(32, np.uint8)
    n = format_request(out, amount, unit == "B", seq)
    assert bytes(out[:n]).decode() == format_daq_request(amount, unit, seq)


def test_kernel_grants_in_sequence_without_the_python_path():
    total = 3000
    with FakeBoard(total_frames=total) as board:
        sock, _ = open_board_socket(board.address, local=("127.0.0.1", 0), rcvbuf=1 << 20)
        credit = CreditLoop(sock.send, CreditConfig(window=16, threshold=4))
        rx = Receiver(sock, idle_s=0.02, n_slots=256, sink=credit)
        try:
            rx.start()
            credit.start()
            got = 0
            end = time.monotonic() + 20
            while got < total and time.monotonic() < end:
                b = rx.get_batch(64, timeout=0.05)
                got += len(b.lengths)
                rx.release(len(b.lengths))
            from agetdaq.readout.link import credit_kernel as ck

            kernel_requests = int(credit.state.st[ck.S_REQUESTS])
        finally:
            rx.stop()
            sock.close()
    assert got == total and credit.counters.lost_replies == 0
    reqs = board.requests
    assert reqs[0] == (16, "F", None)
    assert [r[2] for r in reqs[1:]] == [i & 0xFF for i in range(len(reqs) - 1)]
    assert board.max_allowance <= 16
    assert kernel_requests > len(reqs) // 2  # the fast path did most of the granting
    c = credit.counters
    assert c.requests_sent == len(reqs) and c.credit_sent == sum(r[0] for r in reqs)
    # one sample per grant made on arrival (an idle-tick grant has none)
    assert len(reqs) - 3 <= credit.latency.n <= len(reqs) - 1
