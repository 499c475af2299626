"""Fuzz the running acquisition over UDP outside CI (``make fuzz``): >= 1 000 000 datagrams.

The same rig as tests/test_reliability_fuzz.py, driven by numpy instead of hypothesis so that a
million datagrams take minutes: blocks of ``--block`` bad datagrams (random bytes, mutated good
frames, well-formed frames with random bodies, replies, runts, oversize) each between two good
events, all from the board's address into a running ``Acquisition``. Checked at the end: no
crash or hang, the receiver's count of every kind equals what its rules predict, every good event
came out exact, the decoder's error counts equal the reference decoder's (over the first
``--ref-datagrams`` datagrams: the reference is plain Python). Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_board import FakeBoard  # noqa: E402
from test_reliability_fuzz import (  # noqa: E402
    KINDS,
    TEMPLATE,
    good_datagram,
    good_event,
    receiver_kind,
)

from agetdaq.protocol.decode_ref import ReferenceDecoder  # noqa: E402
from agetdaq.readout.acquisition.engine import Acquisition  # noqa: E402
from agetdaq.readout.acquisition.settings import Settings  # noqa: E402
from agetdaq.readout.link.receiver import DEFAULT_SLOT_SIZE  # noqa: E402

SPECIAL = np.array([0x000F, 0x00F1, 0x00E0, 0x0800, 0x0400, 0x0600, 0xC000, 0x3000, 0x0E00])
TEMPLATE_WORDS = np.frombuffer(TEMPLATE, dtype="<u2")


def bad_datagram(rng: np.random.Generator) -> bytes:
    """One random or mutated datagram (see the module docstring)."""
    kind = rng.integers(0, 10)
    if kind < 3:
        return rng.bytes(int(rng.integers(0, 1600)))
    if kind < 7:
        w = TEMPLATE_WORDS.copy()
        for _ in range(int(rng.integers(0, 5))):
            pos = int(rng.integers(0, len(w)))
            w[pos] = rng.choice(SPECIAL) if rng.random() < 0.5 else rng.integers(0, 0x10000)
        data = w.tobytes()
        if rng.random() < 0.5:
            data = data[: int(rng.integers(0, len(data) + 1))]
        if rng.random() < 0.2:
            data += rng.bytes(int(rng.integers(0, 64)))
        return data
    if kind < 9:
        body = rng.integers(0, 0x10000, int(rng.integers(0, 300)))
        frame = [int(rng.integers(0, 0x200)), 0x0800 | int(rng.integers(0, 0x200)), 0]
        frame += [*body.tolist(), 0x000F]
        frame[2] = 2 * (len(frame) - 1)
        return struct.pack(f"<{len(frame)}H", *frame)
    if rng.random() < 0.5:
        return rng.bytes(2) + b"\x00\x04" + rng.bytes(int(rng.integers(0, 40)))
    return bytes(DEFAULT_SLOT_SIZE + 2)


def fuzz(n_datagrams: int, block: int, ref_datagrams: int, workdir: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    script = workdir / "tiny.txt"
    script.write_text("eof_on_eoe 1\n")
    expected: dict[str, int] = {}
    want: dict[int, object] = {}
    checked = {"exact": 0, "wrong": 0}
    ref = ReferenceDecoder()
    ref_on = True
    sent = 0
    t0 = time.monotonic()
    with FakeBoard(total_frames=0) as board:
        settings = Settings().with_daq(
            bec=f"127.0.0.1:{board.address[1]}", data_dir=str(workdir), store_waveforms="none"
        )
        acq = Acquisition(settings)
        try:
            acq.configure(str(script))
            acq.start_run("background", "fuzz", workdir / "fuzz.h5")
            # the decoder the acquisition runs: the mapping's card, the credit window
            ref = ReferenceDecoder(card_id=0, seq_window=acq.link.credit.sequence_window())
            client = ("127.0.0.1", acq.link.local_address[1])
            rx = acq.link.receiver
            rx0 = rx.counters.as_dict()
            build = acq.datapath.stage("build").builder.build

            def recording(batch):
                out = build(batch)
                for e in out.decoded.events():
                    good = want.pop(e.event_count, None)
                    if good is not None:
                        checked["exact" if e.flags == 0 and e.same_data(good) else "wrong"] += 1
                return out

            acq.datapath.stage("build").builder.build = recording
            count = 1000

            def send(d: bytes) -> None:
                nonlocal sent
                kind = receiver_kind(d)
                expected[kind] = expected.get(kind, 0) + 1
                if kind == "data_frames" and ref_on:
                    ref.feed(d)
                board.send_raw(d, client)
                sent += 1

            def drained() -> None:
                end = time.monotonic() + 30  # bounded: a hang fails here
                while rx.counters.datagrams - rx0["datagrams"] < sent or rx.fill():
                    if time.monotonic() > end:
                        raise RuntimeError(f"hang: the receiver stopped after {sent} datagrams")
                    time.sleep(0.001)

            def taken() -> int | None:
                """The last sequence number the decoder took (it refuses stale or forged
                ones, so a good frame follows it, not the last bad frame sent)."""
                return acq.datapath.stage("decode").decoder.last_lead

            while sent < n_datagrams:
                ref_on = sent < ref_datagrams
                g1, g2 = good_event(count, rng), good_event(count + 1, rng)
                want[count], want[count + 1] = g1, g2
                count += 2
                last = taken()
                send(good_datagram(g1, 0 if last is None else (last + 1) & 0xFF, last is None))
                for _ in range(block):
                    send(bad_datagram(rng))
                drained()
                send(good_datagram(g2, (taken() + 2) & 0xFF))  # after a gap (see RELIABILITY)
                drained()
                if ref_on and sent >= ref_datagrams:
                    decoder_matches = (
                        acq.datapath.stage("decode").decoder.error_counts() == ref.error_counts()
                    )
            end = time.monotonic() + 30
            while want and time.monotonic() < end:
                time.sleep(0.01)
            alive = acq.datapath.failure is None and rx.running
            counts = rx.counters.as_dict()
            decoder = acq.datapath.stage("decode").decoder.error_counts()
            acq.stop_run("fuzz done")
        finally:
            acq.close()
    got = {k: counts[k] - rx0[k] for k in (*KINDS, "data_frames")}
    got["replies"] = sum(counts[k] - rx0[k] for k in ("replies", "reply_queue_drops"))
    report = {
        "datagrams": sent,
        "seconds": time.monotonic() - t0,
        "receiver_counted": got,
        "receiver_expected": {k: expected.get(k, 0) for k in got},
        "decoder_errors": {k: v for k, v in decoder.items() if v},
        "decoder_matches_reference": decoder_matches if ref_datagrams < n_datagrams else None,
        "good_events": {**checked, "never_seen": len(want)},
        "alive": alive,
    }
    report["ok"] = bool(
        alive
        and got == report["receiver_expected"]
        and checked["wrong"] == 0
        and not want
        and report["decoder_matches_reference"] is not False
    )
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datagrams", type=int, default=1_000_000)
    p.add_argument("--block", type=int, default=1000, help="bad datagrams between good events")
    p.add_argument("--ref-datagrams", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agetdaq-fuzz-") as tmp:
        report = fuzz(args.datagrams, args.block, args.ref_datagrams, Path(tmp), args.seed)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
