"""open_run: one API over run files (.h5), legacy .aqs runs and captures, on real files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from agetdaq.protocol.aqs import AqsWriter
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.pcap import PcapRecord, write_pcap
from agetdaq.readout import schema as S
from agetdaq.readout.cli import main
from agetdaq.readout.cli.convert import convert
from agetdaq.readout.datapath.offline import to_h5
from agetdaq.readout.store import DamagedRunFileError, RunFileError, UnknownFormatError, open_run
from agetdaq.readout.store.convert import ConvertError
from agetdaq.readout.store.records import header_rows
from agetdaq.readout.store.run import load_pedestals
from agetdaq.readout.store.writer import RunWriter, WriterConfig

START = 1_700_000_000
BOARD, PC = ("10.0.0.2", 1122), ("10.0.0.1", 40000)


def make_events(n: int, seed: int = 3, first_count: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        channels = []
        for chip in (0, 1, 3):
            bins = np.arange(100 + k, 140 + k, dtype=np.uint16)
            adc = rng.integers(200, 4000, bins.size).astype(np.uint16)
            channels.append(Channel(0, chip, 3 + 5 * chip + k % 4, bins, adc))
        out.append(
            Event(
                event_type=1,
                timestamp=1000 + 50 * k,
                event_count=first_count + k,
                channels=channels,
                last_cells=[(0, k)],
            )
        )
    return out


@pytest.fixture(scope="module")
def same_run(tmp_path_factory):
    """The same 15 events as an .aqs run (split into sub-run files), the run file converted from
    it, and a capture of a board sending them."""
    tmp = tmp_path_factory.mktemp("runs")
    events = make_events(15)
    aqs = tmp / "R00031_test.aqs"
    with AqsWriter(aqs, "R00031_test", START, chunk_bytes=1_500) as w:
        w.write_events(events, built=True)
    to_h5(aqs, tmp / "run.h5")
    data = encode_events(events, max_frame_bytes=500)
    records = [PcapRecord(START - 1.0, PC, BOARD, b"daq 0x000010 F\n")]
    records += [PcapRecord(START + 0.01 * i, BOARD, PC, d) for i, d in enumerate(data)]
    write_pcap(tmp / "board.pcap", records)
    return {"aqs": aqs, "h5": tmp / "run.h5", "pcap": tmp / "board.pcap", "events": events}


@pytest.mark.parametrize("fmt", ["h5", "aqs", "pcap"])
def test_every_format_answers_the_same_api(same_run, fmt) -> None:
    events = same_run["events"]
    lut = StripMapping.default().lut(0)
    with open_run(same_run[fmt]) as run:
        assert run.format == fmt and run.info.format == fmt
        assert run.n_events == len(events)
        rows = run.rows()
        assert rows.dtype == S.EVENT_DTYPE and set(S.EVENT_DTYPE.names) <= set(run.columns)
        assert rows["event_count"].tolist() == [e.event_count for e in events]
        assert rows["timestamp"].tolist() == [e.timestamp for e in events]
        assert np.all(rows["build_flags"] & S.NOT_PROCESSED)  # converted or decoded: no features
        blocks = list(run.row_blocks(block=4))
        assert [len(b) for b in blocks] == [4, 4, 4, 3]
        assert np.array_equal(np.concatenate(blocks), rows)
        assert np.array_equal(run.rows(5, 9), rows[5:9])
        got = list(run.events())
        assert len(got) == len(events) and all(a.same_data(b) for a, b in zip(got, events))
        assert [e.event_count for e in run.events(13, 99)] == [13, 14]
        assert run.event(7).same_data(events[7])
        with pytest.raises(IndexError):
            run.event(len(events))
        traces = run.strip_traces(2)
        assert [s for s, _, _ in traces] == [int(lut[c.card, c.chip, c.channel])
                                             for c in events[2].channels]  # fmt: skip
        assert all(a.same_data(b) for a, b in zip(run.card_events(), events))
        assert run.has_raw and run.n_datagrams == len(list(run.datagrams()))
        assert run.pedestals is None and run.measured_pedestals is None
        assert run.strip_lut().shape == lut.shape
        assert not any(run.counters()["decoder_errors"].values())
    if fmt == "pcap":
        assert rows["time_ns"][0] == pytest.approx(START * 1e9, abs=1e6)  # capture time
        assert rows["raw_first"][0] == 0 and rows["raw_count"].sum() >= len(events)
    else:
        assert run.info.start_unix == START and run.info.run_number == 31


def test_the_raw_index_of_a_decoded_run_is_the_run_file_s(same_run) -> None:
    with open_run(same_run["aqs"]) as aqs, open_run(same_run["h5"]) as h5:
        assert list(aqs.datagrams()) == list(h5.datagrams())  # frames + rebuilt lead words
        for col in ("raw_first", "raw_count", "event_count", "n_channels"):
            assert np.array_equal(aqs.rows()[col], h5.rows()[col]), col
        assert aqs.counters()["source"]["files"] > 1  # the sub-run files were followed
        assert h5.info.closed and h5.final["stop_reason"] == "converted"
        assert h5.metadata["source_format"] == "aqs"


def _write(path, events, store_first_only=False, dtype=S.EVENT_DTYPE, meta=None, peds=None):
    """A run file as the DAQ writes one: raw datagrams, event rows, (some) stored channels."""
    data = encode_events(events, max_frame_bytes=300)
    decoder = StreamDecoder(check_seq=True, has_lead=True)
    decoded = decoder.decode(*pack_datagrams(data))
    n = len(decoded)
    rows = header_rows(decoded, np.arange(n), S.NOT_PROCESSED, START * 10**9)
    ch_rows, bins, adc = [], [], []
    for i, ev in enumerate(events):
        for c in ev.channels[:1] if store_first_only else ev.channels:
            row = np.zeros(1, S.CHANNEL_DTYPE)
            row["event_row"], row["card"], row["chip"], row["channel"] = (
                i,
                c.card,
                c.chip,
                c.channel,
            )
            row["sample_start"], row["n_samples"] = sum(len(b) for b in bins), len(c.bins)
            ch_rows.append(row)
            bins.append(c.bins)
            adc.append(c.adc)
    writer = RunWriter(path, dtype, meta or {}, WriterConfig(swmr=False), peds)
    writer.append_raw(*pack_datagrams(data), np.zeros(len(data), np.int64))
    writer.append_events(
        np.array(rows[list(dtype.names)], dtype=dtype),
        np.concatenate(ch_rows),
        np.concatenate(bins),
        np.concatenate(adc),
    )
    return writer


def test_raw_waveforms_give_every_channel_the_card_sent(tmp_path) -> None:
    events = make_events(6)
    _write(tmp_path / "r.h5", events, store_first_only=True).close({"stop_reason": "test"})
    with open_run(tmp_path / "r.h5") as run:
        assert [len(e.channels) for e in run.events()] == [1] * 6
        assert all(a.same_data(b) for a, b in zip(run.events(raw=True), events))
        assert all(a.same_data(b) for a, b in zip(run.card_events(), events))


def test_a_version_1_file_still_reads(tmp_path) -> None:
    v1 = np.dtype([d for d in S.EVENT_DTYPE.descr if d[0] not in ("raw_first", "raw_count")])
    events = make_events(4)
    _write(tmp_path / "v1.h5", events, store_first_only=True, dtype=v1).close()
    with h5py.File(tmp_path / "v1.h5", "a") as f:
        f.attrs["format_version"] = 1
    with open_run(tmp_path / "v1.h5") as run:
        assert run.info.format_version == 1
        assert "raw_first" not in run.columns and len(run.rows()) == 4
        # no raw_first: the stored channel is what there is
        assert [len(e.channels) for e in run.events(raw=True)] == [1] * 4


def test_a_run_file_being_written_is_read_as_it_grows(tmp_path) -> None:
    path = tmp_path / "live.h5"
    writer = RunWriter(path, S.EVENT_DTYPE, {"run_number": "5"})
    try:
        writer.append_events(
            np.zeros(3, S.EVENT_DTYPE), np.zeros(0, S.CHANNEL_DTYPE), np.zeros(0), np.zeros(0)
        )
        writer.flush()
        with open_run(path) as run:
            assert run.n_events == 3 and not run.info.closed and run.info.run_number == 5
            writer.append_events(
                np.zeros(2, S.EVENT_DTYPE), np.zeros(0, S.CHANNEL_DTYPE), np.zeros(0), np.zeros(0)
            )
            writer.flush()
            run.refresh()
            assert run.n_events == 5
    finally:
        writer.close({"stop_reason": "done"})
    with open_run(path) as run:
        assert run.info.closed and run.final["stop_reason"] == "done"


def test_pedestals_mapping_and_rst_len_come_from_the_file(tmp_path) -> None:
    mapping = StripMapping.default()
    peds = np.zeros(4, S.PEDESTAL_DTYPE)
    peds["strip"] = [0, 1, 2, -1]
    peds["mean"] = 250.0
    meta = {"mapping": mapping.to_text(), "config": "[daq]\nrst_len = 1\n"}
    writer = _write(tmp_path / "p.h5", make_events(2), meta=meta, peds=peds)
    measured = peds.copy()
    measured["mean"] = 260.0
    writer.close({"pedestals": measured})
    with open_run(tmp_path / "p.h5") as run:
        assert np.array_equal(run.pedestals, peds)
        assert np.array_equal(run.measured_pedestals, measured)
        assert run.rst_len == 1 and run.mapping == mapping
        assert np.array_equal(run.strip_lut(), mapping.lut(1))
    assert np.array_equal(load_pedestals(tmp_path / "p.h5"), measured)
    _write(tmp_path / "nop.h5", make_events(1)).close()
    with pytest.raises(RunFileError, match="no pedestal table"):
        load_pedestals(tmp_path / "nop.h5")


def _hdf5_not_ours(path) -> None:
    with h5py.File(path, "w") as f:
        f["x"] = 1


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("missing.h5", None, RunFileError, "no such file"),
        ("folder.h5", "dir", RunFileError, "not a regular file"),
        ("notes.txt", b"hello world\n", UnknownFormatError, "not an .aqs, pcap/pcapng or HDF5"),
        ("fake.h5", b"not hdf5 at all", DamagedRunFileError, "no HDF5 signature"),
        ("other.h5", _hdf5_not_ours, UnknownFormatError, "not an agetdaq run file"),
        ("bad.aqs", b"\x00\x08\x06\x00\x00\x00", DamagedRunFileError, "not an .aqs header"),
        ("short.pcap", b"\xd4\xc3\xb2\xa1\x02\x00", DamagedRunFileError, "damaged capture"),
    ],
)
def test_unreadable_files_raise_a_run_file_error_naming_the_file(
    tmp_path, name, content, error, message
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif callable(content):
        content(path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message) as exc:
        open_run(path)
    assert name in str(exc.value)


def test_a_capture_of_two_boards(tmp_path) -> None:
    other = ("10.0.0.3", 1122)
    a, b = make_events(4), make_events(3, seed=9, first_count=100)
    records = [PcapRecord(1.0 + 0.01 * i, BOARD, PC, d) for i, d in enumerate(encode_events(a))]
    records += [PcapRecord(2.0 + 0.01 * i, other, PC, d) for i, d in enumerate(encode_events(b))]
    records.append(PcapRecord(3.0, ("10.0.0.9", 53), PC, b"\x01\x02 not a board"))
    write_pcap(tmp_path / "two.pcap", records)
    with open_run(tmp_path / "two.pcap") as run:
        assert run.boards() == {BOARD: len(encode_events(a)), other: len(encode_events(b))}
        assert sorted(e.event_count for e in run.events()) == [0, 1, 2, 3, 100, 101, 102]
        assert run.counters()["source"]["boards"] == 2
        assert run.counters()["source"]["other_datagrams"] == 1
    with open_run(tmp_path / "two.pcap", board=(other[0], 0)) as run:
        assert [e.event_count for e in run.events()] == [100, 101, 102]
    with pytest.raises(ConvertError, match="several boards"):
        convert(tmp_path / "two.pcap", tmp_path / "x.h5")
    report = convert(tmp_path / "two.pcap", tmp_path / "b.h5", board=other)
    assert report.events == 3
    with open_run(tmp_path / "b.h5") as run:
        assert run.metadata["board"] == "10.0.0.3:1122"


def test_a_capture_from_any_port_dumps_and_inspects(tmp_path, capsys) -> None:
    board = ("127.0.0.1", 40123)  # an emulator's port, not 1122
    events = make_events(3)
    records = [
        PcapRecord(1.0 + 0.01 * i, board, PC, d) for i, d in enumerate(encode_events(events))
    ]
    write_pcap(tmp_path / "emu.pcap", records)
    assert main(["dump", str(tmp_path / "emu.pcap"), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["dump", str(tmp_path / "emu.pcap"), "--json", "--source", ":1122"]) == 1
    out, err = capsys.readouterr()  # no traffic from the chosen source: not readable
    assert out == "" and "no board traffic read" in err and "127.0.0.1:40123" in err
    assert main(["inspect", str(tmp_path / "emu.pcap"), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"format": "pcap"' in out and '"events": 3' in out
    assert '"classes"' in out and '"not_processed": 3' in out


def test_calibrate_says_why_a_decoded_run_cannot_be_used(same_run, tmp_path, capsys) -> None:
    out = tmp_path / "cal"
    assert main(["calibrate", str(same_run["aqs"]), "-o", str(out)]) == 1
    assert "has no processing features" in capsys.readouterr().err and not out.exists()
