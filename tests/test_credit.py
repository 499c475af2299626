"""Credit loop: request text and sequence numbers, thresholds, units, lost-frame detection,
back-pressure, budget; then the loop driven by a real receiver against a fake board."""

from __future__ import annotations

import threading
import time

import pytest
from fake_board import FakeBoard, dframe

from agetdaq.readout.link.credit import CreditConfig, CreditLoop
from agetdaq.readout.link.feminos import PAUSE_REQUEST
from agetdaq.readout.link.receiver import Receiver, open_board_socket


class Wire:
    """Collects what the credit loop sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __call__(self, datagram: bytes) -> None:
        self.sent.append(datagram)


def make_loop(fill: list[int] | None = None, capacity: int = 100, **cfg) -> tuple[CreditLoop, Wire]:
    wire = Wire()
    clock = iter(range(10_000, 10**9, 1_000))  # each clock read is 1 us later
    loop = CreditLoop(wire, CreditConfig(**cfg), clock=lambda: next(clock))
    box = fill if fill is not None else [0]
    loop.attach_ring(lambda: box[0], capacity)
    return loop, wire


def test_config_validation_and_restore_words():
    assert CreditConfig.from_restore(["8", "1", "F"]) == CreditConfig(
        unit="F", window=8, threshold=1
    )
    cfg = CreditConfig.from_restore(["0x4000", "8192", "b"])
    assert (cfg.unit, cfg.window, cfg.threshold) == ("B", 0x4000, 8192)
    for bad in (
        dict(unit="X"),
        dict(window=0),
        dict(window=4, threshold=5),
        dict(window=0x1000000),
        dict(high_water=0.2, low_water=0.5),
    ):
        with pytest.raises(ValueError):
            CreditConfig(**bad)
    with pytest.raises(ValueError):
        CreditConfig.from_restore(["8", "F"])
    assert PAUSE_REQUEST == "daq 0xffffff F"


def test_first_request_has_no_sequence_then_seq_counts_mod_256():
    loop, wire = make_loop(window=8, threshold=1)
    loop.start()
    assert wire.sent == [b"daq 0x000008 F"]
    for i in range(300):
        loop.on_frame(0x100 if i == 0 else i & 0xFF, 100, 0)
    grants = wire.sent[1:]
    assert len(grants) == 300
    assert grants[0] == b"daq 0x000001 F 0x00"
    assert grants[1] == b"daq 0x000001 F 0x01"
    assert grants[255] == b"daq 0x000001 F 0xff"
    assert grants[256] == b"daq 0x000001 F 0x00"
    c = loop.counters
    assert (c.first_requests, c.requests_sent, c.lost_replies, c.resyncs) == (1, 301, 0, 1)
    assert c.credit_sent == 8 + 300


def test_threshold_batches_grants_and_latency_is_recorded():
    loop, wire = make_loop(window=8, threshold=4)
    loop.start()
    for i in range(10):
        loop.on_frame(i, 100, 0)
    assert wire.sent[1:] == [b"daq 0x000004 F 0x00", b"daq 0x000004 F 0x01"]
    assert loop.snapshot()["pending"] == 2
    assert loop.latency.n == 2  # one sample per grant made on arrival


def test_byte_unit_returns_datagram_lengths():
    loop, wire = make_loop(unit="B", window=16384, threshold=8192)
    loop.start()
    assert wire.sent == [b"daq 0x004000 B"]
    for i in range(5):
        loop.on_frame(i, 3000, 0)
    # 3 frames = 9000 bytes >= 8192 -> grant 9000; then 2 more = 6000 pending
    assert wire.sent[1:] == [b"daq 0x002328 B 0x00"]
    assert loop.snapshot()["pending"] == 6000


def test_sequence_gap_counts_lost_frames_and_returns_their_credit():
    loop, wire = make_loop(window=8, threshold=1)
    loop.start()
    loop.on_frame(0x100, 100, 0)  # first reply after reset
    loop.on_frame(1, 100, 0)
    loop.on_frame(4, 100, 0)  # 2 and 3 lost
    loop.on_frame(0x100, 100, 0)  # card reset: resync, no loss counted
    loop.on_frame(1, 100, 0)
    assert loop.counters.lost_replies == 2
    assert loop.counters.resyncs == 2
    assert wire.sent[3] == b"daq 0x000003 F 0x02"  # 1 received + 2 lost
    before = loop.counters.credit_sent
    loop.on_frame(0, 100, 0)  # 2 behind the expected 2: a late or duplicated frame, not 254 lost
    assert (loop.counters.lost_replies, loop.counters.stale_replies) == (2, 1)
    assert loop.counters.credit_sent == before  # nothing comes back for it
    loop.on_frame(2, 100, 0)  # the sequence goes on where it was
    before = loop.counters.credit_sent
    assert loop.sequence_window() == 16  # a window of 8 frames, doubled
    loop.on_frame(0x82, 100, 0)  # 127 ahead: no board granted 8 frames can be there (forged)
    assert (loop.counters.lost_replies, loop.counters.out_of_window) == (2, 1)
    assert loop.counters.credit_sent == before  # nothing for it, and the sequence stays
    loop.on_frame(13, 100, 0)  # 3..12 lost: a forward gap inside the window
    assert loop.counters.lost_replies == 2 + 10
    assert loop.counters.credit_sent - before <= 8  # never more than the window comes back


def test_backpressure_holds_grants_and_resumes_after_release():
    fill = [0]
    loop, wire = make_loop(
        fill, capacity=100, window=8, threshold=1, high_water=0.5, low_water=0.25
    )
    loop.start()
    loop.on_frame(0x100, 100, 0)
    assert len(wire.sent) == 2
    fill[0] = 50
    for i in range(1, 6):
        loop.on_frame(i, 100, 0)
    assert len(wire.sent) == 2 and loop.held and loop.counters.holds == 1
    fill[0] = 30
    loop.on_release()  # above low water: still held
    assert loop.held and len(wire.sent) == 2
    fill[0] = 25
    loop.on_release()
    assert not loop.held and loop.counters.resumes == 1
    assert wire.sent[2:] == [b"daq 0x000005 F 0x01"]


def test_stop_silences_and_restart_sends_a_first_request_again():
    loop, wire = make_loop(window=8, threshold=1)
    loop.start()
    loop.on_frame(0x100, 100, 0)
    loop.stop()
    loop.on_frame(1, 100, 0)
    assert len(wire.sent) == 2 and not loop.running
    loop.configure(CreditConfig(window=12, threshold=2))
    loop.start()
    assert wire.sent[2] == b"daq 0x00000c F"
    loop.on_frame(0x100, 100, 0)
    loop.on_frame(1, 100, 0)
    assert wire.sent[3] == b"daq 0x000002 F 0x00"


def test_byte_budget_caps_requests_then_sends_a_zero_request():
    loop, wire = make_loop(unit="B", window=16384, threshold=1000)
    loop.start(budget_bytes=10_000)
    assert wire.sent == [b"daq 0x002710 B"]  # capped at the budget
    loop.on_frame(0x100, 4000, 0)
    assert wire.sent[1] == b"daq 0x000fa0 B 0x00"
    loop.on_frame(1, 4000, 0)  # 2000 bytes left
    assert wire.sent[2] == b"daq 0x0007d0 B 0x01"
    loop.on_frame(2, 2000, 0)  # budget reached
    assert wire.sent[3] == b"daq 0x000000 B 0x02"
    assert not loop.running and loop.counters.budget_done == 1
    loop.on_frame(3, 2000, 0)
    assert len(wire.sent) == 4


def test_send_errors_are_counted_and_credit_kept():
    calls = {"n": 0}

    def flaky(datagram: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionRefusedError("icmp")

    loop = CreditLoop(flaky, CreditConfig(window=8, threshold=1))
    loop.attach_ring(lambda: 0, 100)
    loop.start()
    loop.on_frame(0x100, 100, 0)  # this grant fails
    loop.on_frame(1, 100, 0)  # retried together with the new credit
    assert loop.counters.send_errors == 1
    assert loop.counters.credit_sent == 8 + 2


def test_window_larger_than_ring_headroom_warns(caplog):
    loop = CreditLoop(Wire(), CreditConfig(window=64, threshold=1))
    with caplog.at_level("WARNING"):
        loop.attach_ring(lambda: 0, 100)
    assert any("high-water" in r.getMessage() for r in caplog.records)


# ---- with a receiver and a fake board --------------------------------------------------------


def run_link(board: FakeBoard, credit: CreditLoop, n_slots: int, consume) -> Receiver:
    sock, _ = open_board_socket(board.address, local=("127.0.0.1", 0), rcvbuf=1 << 20)
    credit._send = sock.send  # the loop sends on the board socket
    rx = Receiver(sock, n_slots=n_slots, slot_size=256, sink=credit, idle_s=0.02)
    try:
        with rx:
            consume(rx)
    finally:
        sock.close()
    return rx


def drain(rx: Receiver, n: int, deadline_s: float = 10.0) -> list[bytes]:
    out: list[bytes] = []
    end = time.monotonic() + deadline_s
    while len(out) < n and time.monotonic() < end:
        buf, lengths, _ = rx.get_batch(64, 0.05)
        out += [bytes(buf[i, : lengths[i]]) for i in range(len(lengths))]
        rx.release(len(lengths))
    return out


def test_credit_keeps_data_flowing_with_no_loss():
    total = 2000
    with FakeBoard(total_frames=total) as board:
        credit = CreditLoop(Wire(), CreditConfig(window=8, threshold=2))
        got: list[bytes] = []

        def consume(rx: Receiver) -> None:
            credit.start()
            got.extend(drain(rx, total))

        rx = run_link(board, credit, 512, consume)
        assert got == [dframe(i & 0xFF, i == 0, 4, i) for i in range(total)]
        assert board.max_allowance <= 8
        reqs = board.requests
        assert reqs[0] == (8, "F", None)
        assert [r[2] for r in reqs[1:]] == [i & 0xFF for i in range(len(reqs) - 1)]
        assert all(r[0] >= 2 for r in reqs[1:])
    c = credit.counters
    assert c.lost_replies == 0 and c.resyncs == 1 and rx.counters.data_frames == total
    assert rx.counters.ring_full_drops == 0 and rx.counters.malformed == 0
    assert credit.latency.n == len(reqs) - 1


def test_lost_frames_are_detected_and_do_not_shrink_the_window():
    total = 300
    lost = {10, 11, 200}
    with FakeBoard(total_frames=total, skip_seqs=lost) as board:
        credit = CreditLoop(Wire(), CreditConfig(window=4, threshold=1))
        got: list[bytes] = []

        def consume(rx: Receiver) -> None:
            credit.start()
            got.extend(drain(rx, total - len(lost)))

        run_link(board, credit, 256, consume)
    assert len(got) == total - len(lost)  # with a shrinking window this would stall
    assert credit.counters.lost_replies == len(lost)


def test_slow_consumer_backpressure_holds_instead_of_dropping():
    total = 400
    with FakeBoard(total_frames=total) as board:
        credit = CreditLoop(
            Wire(), CreditConfig(window=8, threshold=1, high_water=0.5, low_water=0.25)
        )
        got: list[bytes] = []

        def consume(rx: Receiver) -> None:
            credit.start()
            # do not consume: the ring (32 slots) fills to the high-water mark + one window
            assert board.wait_for(lambda: credit.held, 5.0)
            time.sleep(0.1)
            assert rx.fill() <= 16 + 8
            frames_while_held = board.frames_sent
            time.sleep(0.1)
            assert board.frames_sent == frames_while_held  # the board keeps its data
            got.extend(drain(rx, total))

        rx = run_link(board, credit, 32, consume)
    assert len(got) == total
    assert rx.counters.ring_full_drops == 0
    assert credit.counters.holds >= 1 and credit.counters.resumes >= 1


def test_grants_from_two_threads_keep_sequence_order():
    """Capture-thread grants and consumer-thread resumes interleave under one lock."""
    fill = [0]
    loop, wire = make_loop(fill, capacity=10, window=4, threshold=1, high_water=0.5, low_water=0.1)
    loop.start()
    stop = threading.Event()

    def toggler() -> None:
        while not stop.is_set():
            fill[0] = 5 if fill[0] == 0 else 0
            loop.on_release()

    t = threading.Thread(target=toggler)
    t.start()
    for i in range(3000):
        loop.on_frame(0x100 if i == 0 else i & 0xFF, 100, 0)
    stop.set()
    t.join()
    fill[0] = 0
    loop.on_release()
    seqs = [int(m.split()[3], 16) for m in wire.sent[1:]]
    assert seqs == [i & 0xFF for i in range(len(seqs))]
    granted = sum(int(m.split()[1], 16) for m in wire.sent[1:])
    assert granted + loop.snapshot()["pending"] == 3000
