"""Receiver: SO_RCVBUF read-back, ring hand-off and ordering, demultiplexing, drop and malformed
counters. Real sockets on 127.0.0.1 against a tiny fake board."""

from __future__ import annotations

import logging
import socket
import struct
import time

import numpy as np
import pytest
from fake_board import FakeBoard, dframe

from agetdaq.protocol.commands import encode_cframe, parse_reply
from agetdaq.readout.link.counters import LatencyHistogram, ReceiverCounters, kernel_drops
from agetdaq.readout.link.receiver import (
    RcvbufReport,
    Receiver,
    open_board_socket,
    read_rmem_max,
    set_rcvbuf,
)

# Hand-written golden datagrams (PROTOCOL.md §1.1-1.3), little-endian words.
# Data frame, lead seq 0x05: SOF_D card 0 (0x0800), size 10 bytes, 2 samples 0x3001 0x3002, EOF.
GOLDEN_DFRAME = bytes.fromhex("050000080a00013002300f00")
# Data frame whose lead word is 0 (sequence wrapped): still data, by its SOF word.
GOLDEN_DFRAME_SEQ0 = bytes.fromhex("000000080a00013002300f00")
# CFRAME reply: lead 0, SOF_C 0x0400, err 0, ASCII_LEN 2, "ok" NUL pad, EOF.
GOLDEN_CFRAME = bytes.fromhex("0000000400000201") + b"ok\x00\x00" + bytes.fromhex("0f00")


def wait_until(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


@pytest.fixture
def board():
    with FakeBoard() as fb:
        yield fb


def make_rx(board: FakeBoard, **kw) -> tuple[socket.socket, Receiver]:
    sock, _ = open_board_socket(board.address, local=("127.0.0.1", 0), rcvbuf=1 << 20)
    return sock, Receiver(sock, idle_s=0.02, **kw)


def client_addr(sock: socket.socket) -> tuple[str, int]:
    return sock.getsockname()


# ---- SO_RCVBUF -------------------------------------------------------------------------------


def test_rcvbuf_report_warns_when_short_and_names_rmem_max():
    short = RcvbufReport(requested=64 << 20, granted=8 << 20, rmem_max=4 << 20)
    assert short.short
    msg = short.warning()
    assert msg is not None
    assert "net.core.rmem_max" in msg and str(64 << 20) in msg and str(8 << 20) in msg
    assert RcvbufReport(requested=1 << 20, granted=2 << 20, rmem_max=4 << 20).warning() is None


def test_set_rcvbuf_reads_back_small_request_without_warning(caplog):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, caplog.at_level(logging.WARNING):
        report = set_rcvbuf(s, 64 * 1024)
        assert report.granted == s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert report.granted >= 64 * 1024
        assert not report.short
    assert not [r for r in caplog.records if "SO_RCVBUF" in r.getMessage()]


def test_set_rcvbuf_warns_when_kernel_caps_the_request(caplog):
    rmem_max = read_rmem_max()
    if rmem_max is None:
        pytest.skip("no /proc/sys/net/core/rmem_max here")
    requested = 4 * rmem_max + 4096
    if requested > 2**31 - 1:
        pytest.skip("rmem_max too large to exceed with an int option")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, caplog.at_level(logging.WARNING):
        report = set_rcvbuf(s, requested, force=False)
    assert report.requested == requested
    assert report.granted < requested  # Linux caps at 2 * rmem_max
    assert report.rmem_max == rmem_max
    assert any("net.core.rmem_max" in r.getMessage() for r in caplog.records)


def test_set_rcvbuf_rejects_nonsense():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(ValueError):
        set_rcvbuf(s, 0)


# ---- ring and demultiplexing -----------------------------------------------------------------


def test_golden_reply_is_what_the_encoder_builds():
    assert encode_cframe("ok") == GOLDEN_CFRAME
    assert parse_reply(GOLDEN_CFRAME).text == "ok"


def test_frames_arrive_in_order_and_replies_go_to_the_reply_queue(board):
    sock, rx = make_rx(board)
    with rx:
        to = client_addr(sock)
        board.send_raw(GOLDEN_DFRAME, to)
        board.send_raw(GOLDEN_CFRAME, to)
        board.send_raw(GOLDEN_DFRAME_SEQ0, to)
        for i in range(20):
            board.send_raw(dframe(i + 1, n_body=3 + i % 5, fill=i), to)
        assert wait_until(lambda: rx.counters.datagrams == 23)
        reply = rx.get_reply(1.0)
        assert reply is not None and reply.datagram == GOLDEN_CFRAME
        assert rx.get_reply(0.01) is None
        got: list[bytes] = []
        arrivals: list[int] = []
        while len(got) < 22:
            buf, lengths, arrival = rx.get_batch(7, 1.0)
            assert len(lengths) > 0
            got += [bytes(buf[i, : lengths[i]]) for i in range(len(lengths))]
            arrivals += arrival.tolist()
            rx.release(len(lengths))
    sock.close()
    assert got[0] == GOLDEN_DFRAME and got[1] == GOLDEN_DFRAME_SEQ0
    assert got[2:] == [dframe(i + 1, n_body=3 + i % 5, fill=i) for i in range(20)]
    assert arrivals == sorted(arrivals)
    c = rx.counters
    assert (c.data_frames, c.replies, c.malformed, c.ring_full_drops) == (22, 1, 0, 0)
    assert c.data_bytes == sum(len(x) for x in got)


def test_batches_are_contiguous_views_and_wrap(board):
    sock, rx = make_rx(board, n_slots=8, slot_size=64)
    to = client_addr(sock)
    with rx:
        for round_ in range(2):
            for i in range(6):
                board.send_raw(dframe(i, fill=10 * round_ + i), to)
            assert wait_until(lambda r=round_: rx.counters.data_frames == 6 * (r + 1))
            sizes = []
            seen = []
            while sum(sizes) < 6:
                buf, lengths, _ = rx.get_batch(100, 1.0)
                assert buf.shape[1] == 64 and buf.base is not None  # a view, not a copy
                sizes.append(len(lengths))
                seen += [
                    int(np.frombuffer(bytes(buf[j, 6:8]), "<u2")[0]) & 0xFFF
                    for j in range(len(lengths))
                ]
                rx.release(len(lengths))
            assert seen == [10 * round_ + i for i in range(6)]
            # second round starts at slot 6: 2 slots up to the end of the ring, then 4
            assert sizes == ([6] if round_ == 0 else [2, 4])
    sock.close()


def test_get_batch_times_out_empty_and_release_is_checked(board):
    sock, rx = make_rx(board)
    with rx:
        buf, lengths, arrival = rx.get_batch(10, 0.05)
        assert len(lengths) == 0 and buf.shape[0] == 0 and len(arrival) == 0
        with pytest.raises(ValueError, match="cannot release"):
            rx.release(1)
        with pytest.raises(ValueError):
            rx.get_batch(0, 0)
    sock.close()
    assert not rx.running


def test_full_ring_counts_drops_and_keeps_the_oldest_frames(board):
    sock, rx = make_rx(board, n_slots=4, slot_size=64)
    to = client_addr(sock)
    with rx:
        for i in range(10):
            board.send_raw(dframe(i, fill=i), to)
        board.send_raw(GOLDEN_CFRAME, to)  # a reply still gets through a full ring
        assert wait_until(lambda: rx.counters.datagrams == 11)
        assert rx.counters.ring_full_drops == 6
        assert rx.counters.data_frames == 4
        assert rx.get_reply(1.0) is not None
        buf, lengths, _ = rx.get_batch(10, 1.0)
        assert [bytes(buf[i, : lengths[i]]) for i in range(4)] == [
            dframe(i, fill=i) for i in range(4)
        ]
        rx.release(4)
        board.send_raw(dframe(99, fill=99), to)
        assert wait_until(lambda: rx.counters.data_frames == 5)
        buf, lengths, _ = rx.get_batch(10, 1.0)
        assert bytes(buf[0, : lengths[0]]) == dframe(99, fill=99)
        assert rx.running
    sock.close()
    assert rx.counters.lost == 6
    assert rx.counters.accounted == rx.counters.datagrams == 12


def test_malformed_datagrams_are_counted_by_kind_and_skipped(board):
    sock, rx = make_rx(board, slot_size=64)
    to = client_addr(sock)
    good = dframe(1, n_body=2)
    bad = {
        "runt": b"\x00\x08",
        "odd_length": good + b"\x00",
        "oversize": dframe(2, n_body=40),  # 88 bytes > 64-byte slot
        "bad_sof": bytes.fromhex("0100013002300f00"),
        "size_mismatch": bytes.fromhex("010000080c00013002300f00"),
        "no_eof": bytes.fromhex("010000080a00013002300230"),
    }
    with rx:
        for datagram in bad.values():
            board.send_raw(datagram, to)
        board.send_raw(good, to)
        assert wait_until(lambda: rx.counters.datagrams == len(bad) + 1)
        buf, lengths, _ = rx.get_batch(10, 1.0)
        assert len(lengths) == 1 and bytes(buf[0, : lengths[0]]) == good
    sock.close()
    c = rx.counters
    for kind in bad:
        assert getattr(c, kind) == 1, kind
    assert c.malformed == len(bad) and c.data_frames == 1 and c.replies == 0
    assert c.accounted == c.datagrams


def test_unchecked_mode_keeps_frames_with_a_wrong_size_word(board):
    sock, rx = make_rx(board, check_frames=False)
    with rx:
        board.send_raw(bytes.fromhex("010000080c00013002300f00"), client_addr(sock))
        assert wait_until(lambda: rx.counters.data_frames == 1)
    sock.close()
    assert rx.counters.size_mismatch == 0


def test_reply_with_nonzero_lead_is_delivered_and_counted(board):
    sock, rx = make_rx(board)
    with rx:
        board.send_raw(b"\x07\x00" + GOLDEN_CFRAME[2:], client_addr(sock))
        reply = rx.get_reply(2.0)
    sock.close()
    assert reply is not None and reply.datagram[2:] == GOLDEN_CFRAME[2:]
    assert rx.counters.reply_bad_lead == 1


def test_unconnected_socket_counts_foreign_senders(board):
    sock, _ = open_board_socket(board.address, local=("127.0.0.1", 0), connect=False)
    rx = Receiver(sock, idle_s=0.02, from_host="127.0.0.1")
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        try:
            other.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("127.0.0.2 not routable here")
        other.sendto(GOLDEN_DFRAME, sock.getsockname())
        board.send_raw(GOLDEN_DFRAME, sock.getsockname())
        assert wait_until(lambda: rx.counters.foreign == 1 and rx.counters.data_frames == 1)
    sock.close()


def test_icmp_port_unreachable_is_counted_not_fatal():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()  # closed below: nobody listens there
    sock, _ = open_board_socket(dead, local=("127.0.0.1", 0), rcvbuf=1 << 16)
    rx = Receiver(sock, idle_s=0.02)
    with rx:
        sock.send(b"version")
        assert wait_until(lambda: rx.counters.icmp_errors >= 1, 3.0)
        assert rx.running
    sock.close()


def test_stats_include_kernel_drops_and_capacity(board):
    sock, rx = make_rx(board, n_slots=16)
    stats = rx.stats()
    assert stats["capacity"] == 16 and stats["fill"] == 0
    assert stats["kernel_drops"] == kernel_drops(sock)
    if stats["kernel_drops"] is not None:
        assert stats["kernel_drops"] == 0
    sock.close()


def test_receiver_rejects_bad_geometry(board):
    sock, _ = open_board_socket(board.address, rcvbuf=1 << 16)
    with pytest.raises(ValueError):
        Receiver(sock, n_slots=1)
    with pytest.raises(ValueError):
        Receiver(sock, slot_size=1001)
    sock.close()


def test_counters_and_histogram_helpers():
    c = ReceiverCounters(runt=1, no_eof=2, ring_full_drops=3, foreign=1)
    assert c.malformed == 3 and c.lost == 7
    assert c.as_dict()["no_eof"] == 2
    h = LatencyHistogram(bin_ns=1000, n_bins=100)
    for ns in [500] * 90 + [5_500] * 9 + [1_000_000]:
        h.add(ns)
    assert h.percentile(50) == 1000.0
    assert h.percentile(99) == 6000.0
    assert h.percentile(100) == 1_000_000.0  # in overflow: reported as the max
    assert h.summary()["overflow"] == 1 and h.n == 100
    h.reset()
    assert h.n == 0 and np.isnan(h.percentile(50))


def test_struct_layout_of_golden_frame_matches_spec():
    words = struct.unpack("<6H", GOLDEN_DFRAME)
    assert words[2] + 2 == len(GOLDEN_DFRAME)  # size counts SOF..EOF


def test_ring_on_its_own_producer_and_consumer_interfaces():
    from agetdaq.readout.link.ring import Ring

    ring = Ring(4, 16, wake_at=2)
    released: list[int] = []
    ring.on_release = lambda: released.append(ring.fill())
    for i in range(3):  # the producer writes rows, then publishes them by moving head
        ring.buf[i, 0] = i
        ring.lengths[i] = 10 + i
    ring.head = 3
    b = ring.get_batch(8, timeout=0)
    assert list(b.buf[:, 0]) == [0, 1, 2] and list(b.lengths) == [10, 11, 12]
    ring.release(2)
    assert released == [1] and ring.fill() == 1
    ring.release(0)  # nothing released: no hook call
    assert released == [1]
    with pytest.raises(ValueError, match="cannot release"):
        ring.release(2)
    ring.head = 5  # rows 2, 3 and 0 (wrapped): a batch never spans the end of the ring
    assert len(ring.get_batch(8, timeout=0).lengths) == 2
    ring.release(2)
    assert len(ring.get_batch(8, timeout=0).lengths) == 1
    with pytest.raises(ValueError):
        Ring(4, 17)
