"""`agetdaq dump` on real .aqs, pcap and run files, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agetdaq.protocol.aqs import AqsWriter
from agetdaq.protocol.commands import encode_cframe
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.pcap import PcapRecord, write_pcap
from agetdaq.readout.cli import main

BOARD = ("192.168.10.1", 1122)
PC = ("192.168.10.100", 40000)


def make_events(n: int) -> list[Event]:
    rng = np.random.default_rng(7)
    out = []
    for k in range(n):
        bins = np.arange(200 + k, 210 + k, dtype=np.uint16)
        channels = [
            Channel(0, chip, 20 + chip, bins, rng.integers(0, 4096, bins.size).astype(np.uint16))
            for chip in (0, 2)
        ]
        out.append(
            Event(event_type=1, timestamp=5000 * k + 3, event_count=100 + k, channels=channels)
        )
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["dump", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def check_json(lines: list[str], events: list[Event], first_id: int = 0) -> None:
    mapping = StripMapping.default()
    assert len(lines) == len(events)
    for i, (line, ev) in enumerate(zip(lines, events)):
        obj = json.loads(line)
        assert obj["event_id"] == first_id + i
        assert obj["event_count"] == ev.event_count
        assert obj["timestamp"] == ev.timestamp
        assert obj["type"] == ev.event_type
        assert obj["errors"] == {}
        assert len(obj["channels"]) == len(ev.channels)
        for got, want in zip(obj["channels"], ev.channels):
            assert (got["card"], got["chip"], got["channel"]) == want.key()
            assert got["strip"] == mapping.strip_name(*want.key())
            assert got["samples"] == {str(b): int(a) for b, a in zip(want.bins, want.adc)}


@pytest.fixture
def aqs_file(tmp_path):
    events = make_events(5)
    path = tmp_path / "R00001_dump.aqs"
    with AqsWriter(path, "R00001_dump", 1_700_000_000) as writer:
        writer.write_events(events, built=True)
    return path, events


@pytest.fixture
def pcap_file(tmp_path):
    """A capture: a command, a text reply, then the data datagrams of the events."""
    events = make_events(6)
    datagrams = encode_events(events, max_frame_bytes=120, eof_on_eoe=False)
    records = [
        PcapRecord(10.0, PC, BOARD, b"daq 0x000010 F\n"),
        PcapRecord(10.1, BOARD, PC, encode_cframe("0 Fem(00) daq paused\n")),
    ]
    records += [PcapRecord(11.0 + 0.001 * i, BOARD, PC, d) for i, d in enumerate(datagrams)]
    path = tmp_path / "board.pcap"
    write_pcap(path, records)
    return path, events, datagrams


def test_json_from_aqs(capsys, aqs_file):
    path, events = aqs_file
    rc, out, err = run_cli(capsys, str(path), "--json")
    assert rc == 0
    check_json(out.splitlines(), events)
    summary = json.loads(err.strip().splitlines()[-1])["summary"]
    assert summary["format"] == "aqs" and summary["events"] == 5 and summary["complete"]
    assert not any(summary["decoder_errors"].values())
    assert summary["source"]["built_event_markers"] == 10


def test_event_range(capsys, aqs_file):
    path, events = aqs_file
    rc, out, _ = run_cli(capsys, str(path), "--json", "--events", "1:3")
    assert rc == 0
    check_json(out.splitlines(), events[1:3], first_id=1)
    rc, out, _ = run_cli(capsys, str(path), "--json", "--events", "4")
    check_json(out.splitlines(), events[4:], first_id=4)


def test_text_output(capsys, aqs_file):
    path, events = aqs_file
    rc, out, _ = run_cli(capsys, str(path))
    assert rc == 0
    assert out.count("\nevent ") + out.startswith("event ") == 5
    assert "count=100 type=1 ts=3 " in out
    first = events[0].channels[0]
    assert f"  200: {int(first.adc[0]):4d} {int(first.adc[1]):4d}" in out
    assert "-- 5 events from" in out and "decoder errors: none" in out


def test_json_from_pcap(capsys, pcap_file):
    path, events, _ = pcap_file
    rc, out, err = run_cli(capsys, str(path), "--json")
    assert rc == 0
    check_json(out.splitlines(), events)
    summary = json.loads(err.strip().splitlines()[-1])["summary"]
    assert summary["format"] == "pcap" and summary["events"] == 6
    assert not any(summary["decoder_errors"].values())
    assert summary["source"]["replies"] == 1 and summary["source"]["boards"] == 1


def test_lost_and_garbage_datagrams_are_reported(capsys, tmp_path, pcap_file):
    _, events, datagrams = pcap_file
    kept = datagrams[:1] + datagrams[2:]  # one datagram lost on the wire
    records = [PcapRecord(1.0 + i, BOARD, PC, d) for i, d in enumerate(kept)]
    records.insert(2, PcapRecord(2.5, BOARD, PC, b"\x07\x00\xff\xff\x12"))  # garbage
    path = tmp_path / "lossy.pcapng.pcap"
    write_pcap(path, records)
    rc, out, err = run_cli(capsys, str(path), "--json")
    assert rc == 0
    objs = [json.loads(line) for line in out.splitlines()]
    summary = json.loads(err.strip().splitlines()[-1])["summary"]
    assert summary["decoder_errors"]["SEQ_GAP"] >= 1
    assert sum(summary["decoder_errors"].values()) >= 2
    assert any(o["errors"] for o in objs)  # the damaged event says so
    assert {o["event_count"] for o in objs if not o["errors"]} <= {e.event_count for e in events}


def test_subprocess_entry_point(pcap_file):
    path, events, _ = pcap_file
    exe = Path(sys.executable).with_name("agetdaq")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "agetdaq"]
    proc = subprocess.run(
        [*cmd, "dump", str(path), "--json", "--events", "2:"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    check_json(proc.stdout.splitlines(), events[2:], first_id=2)
    assert '"summary"' in proc.stderr


def test_h5_run_file(capsys, tmp_path):
    from agetdaq.readout import schema as S
    from agetdaq.readout.store.writer import RunWriter

    dtype = np.dtype([("event_count", "<u4"), ("timestamp", "<u8"), ("type", "u1")])
    ev = np.zeros(3, dtype)
    ev["event_count"] = [7, 8, 9]
    ev["timestamp"] = [10, 20, 30]
    ch = np.zeros(3, S.CHANNEL_DTYPE)
    ch["event_row"] = [0, 1, 2]
    ch["chip"] = 1
    ch["channel"] = 5
    ch["n_samples"] = 2
    ch["sample_start"] = [0, 2, 4]
    path = tmp_path / "run.h5"
    with RunWriter(path, dtype) as writer:
        bins = np.tile(np.array([40, 41], np.uint16), 3)
        writer.append_events(ev, ch, bins, np.arange(6, dtype=np.uint16) + 300)
    rc, out, _ = run_cli(capsys, str(path), "--json", "--events", "1:")
    assert rc == 0
    objs = [json.loads(line) for line in out.splitlines()]
    assert [(o["event_id"], o["event_count"], o["timestamp"]) for o in objs] == [
        (1, 8, 20),
        (2, 9, 30),
    ]
    assert objs[0]["channels"][0]["samples"] == {"40": 302, "41": 303}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.aqs", None, "no such file"),
        ("notes.txt", b"hello world\n", "not an .aqs, pcap/pcapng or HDF5"),
        ("bad.aqs", b"\x00\x08\x06\x00\x00\x00", "not an .aqs header"),
        ("fake.h5", b"not hdf5 at all", "fake.h5"),
        ("short.pcap", b"\xd4\xc3\xb2\xa1\x02\x00", "damaged capture header"),
    ],
)
def test_bad_files_give_a_clear_error(capsys, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    rc, out, err = run_cli(capsys, str(path), "--json")
    assert rc == 1
    assert out == ""
    assert err.startswith("agetdaq dump: ") and message in err


def test_bad_range_is_a_usage_error(capsys, aqs_file):
    with pytest.raises(SystemExit) as exc:
        main(["dump", str(aqs_file[0]), "--events", "x:y"])
    assert exc.value.code == 2
    assert "expected A:B" in capsys.readouterr().err
