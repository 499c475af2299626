"""ROOT export in feminos-daq's layout, written with ROOT, read back from C++ (cling) as REST's
reader binds it and with uproot, and compared with the run file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agetdaq.protocol.aqs import AqsWriter
from agetdaq.protocol.event import Channel, Event, signal_id
from agetdaq.readout.cli import main
from agetdaq.readout.datapath.offline import to_h5
from agetdaq.readout.store.convert import ConvertError
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.rootblocks import event_block, fill_value
from agetdaq.readout.store.rootexport import export_root

uproot = pytest.importorskip("uproot")
ROOT = pytest.importorskip("ROOT", reason="the root extra (ROOT's PyPI package) is not installed")

START = 1_700_000_000


def _events() -> list[Event]:
    zs = Channel(0, 2, 17, np.array([100, 101, 102, 300], np.uint16), np.array([7, 9, 8, 500]))
    full = Channel(0, 0, 5, np.arange(512, dtype=np.uint16), np.arange(512, dtype=np.uint16) + 1)
    other_card = Channel(3, 1, 70, np.array([0, 1], np.uint16), np.array([4000, 4001], np.uint16))
    quiet = Event(timestamp=77, event_count=2, channels=[])
    return [
        Event(timestamp=0x123456789A, event_count=0, channels=[zs, full]),
        Event(timestamp=0x123456789B, event_count=1, channels=[other_card, zs]),
        quiet,
    ]


@pytest.fixture
def run_file(tmp_path):
    aqs = tmp_path / "R00007_cal.aqs"
    with AqsWriter(aqs, "R00007_cal", START) as w:
        w.write_events(_events(), built=True)
    to_h5(aqs, tmp_path / "run.h5")
    return tmp_path / "run.h5"


def test_fill_values_and_blocks_by_hand():
    adc = np.array([10, 12, 11, 13, 12, 11, 10, 12, 900, 12], np.uint16)
    assert fill_value(adc, "zero") == 0
    assert fill_value(adc, "baseline") == 12  # median of the first 8: 10 10 11 11 12 12 12 13
    assert fill_value(adc, 250) == 250
    ch = Channel(0, 1, 4, np.array([3, 4, 600], np.uint16), np.array([20, 30, 40], np.uint16))
    ids, values, outside = event_block(Event(channels=[ch]), "zero")
    assert ids.tolist() == [72 + 4] and outside == 1  # bin 600 is past the 512-cell SCA
    assert values.shape == (1, 512) and values[0, 3:5].tolist() == [20, 30]
    assert values.sum() == 50  # nothing left-packed, nothing left over


def test_export_reads_back_like_the_run_file(run_file, tmp_path):
    out = tmp_path / "run.root"
    report = export_root(
        run_file, out, fill="zero", drift_field=120.5, mesh_voltage=330, pressure=1.4,
        detector="IAXO-D1",
    )  # fmt: skip
    assert report.events == 3 and not out.with_name("run.root.part").exists()
    with uproot.open(out) as f:
        ev = f["events"].arrays(library="np")
        run = f["run"].arrays(library="np")
    with RunFile(run_file) as h5:
        want = list(h5.iter_events())
        rows = h5.events()
    assert ev["event_id"].tolist() == rows["event_id"].tolist()
    assert ev["card_timestamp"].tolist() == [e.timestamp for e in want]
    assert ev["event_count"].tolist() == [0, 1, 2]
    assert ev["timestamp"].tolist() == [START * 1000] * 3  # converted run: its start, in ms
    for i, e in enumerate(want):
        ids = ev["signal_ids"][i]
        assert ids.tolist() == sorted(c.signal_id for c in e.channels)
        values = ev["signal_values"][i].reshape(len(ids), 512)
        for c in e.channels:
            row = values[ids.tolist().index(c.signal_id)]
            assert np.array_equal(row[c.bins], c.adc)  # at their time bins
            rest = np.ones(512, bool)
            rest[c.bins] = False
            assert not row[rest].any()  # zero fill
    assert ev["signal_ids"][1].tolist() == [signal_id(0, 2, 17), signal_id(3, 1, 70)]
    assert run["number"].tolist() == [7] and run["tag"].tolist() == ["converted"]
    assert run["detector"].tolist() == ["IAXO-D1"] and run["name"].tolist() == ["run"]
    assert run["timestamp"].tolist() == [START * 1000]
    assert run["drift_field_V_cm_bar"][0] == pytest.approx(120.5)
    assert run["mesh_voltage_V"][0] == 330 and run["detector_pressure_bar"][0] == pytest.approx(1.4)


def test_baseline_fill_and_unset_run_values(run_file, tmp_path):
    export_root(run_file, tmp_path / "b.root", compression="zlib")
    with uproot.open(tmp_path / "b.root") as f:
        values = f["events"]["signal_values"].array(library="np")[0].reshape(2, 512)
        run = f["run"].arrays(library="np")
    zs_row, full_row = values[1], values[0]  # ids: chip 0 ch 5 (full) < chip 2 ch 17 (ZS)
    assert np.array_equal(full_row, np.arange(512) + 1)
    assert zs_row[300] == 500 and zs_row[0] == 8 and zs_row[511] == 8  # median of 7 9 8 500
    assert math.isnan(run["mesh_voltage_V"][0])


def test_aqs_exports_directly_and_stored_waveforms_need_no_raw(run_file, tmp_path):
    aqs = tmp_path / "R00007_cal.aqs"
    export_root(aqs, tmp_path / "a.root", fill=0)
    export_root(run_file, tmp_path / "s.root", fill=0, waveforms="stored")
    with uproot.open(tmp_path / "a.root") as a, uproot.open(tmp_path / "s.root") as s:
        for name in ("signal_ids", "signal_values", "card_timestamp", "event_count"):
            assert a["events"][name].array().tolist() == s["events"][name].array().tolist()
        assert a["run"]["number"].array().tolist() == [7]


def test_bad_options_are_refused_and_leave_no_file(run_file, tmp_path):
    for kw in ({"fill": "mean"}, {"fill": 70000}, {"compression": "bzip"}, {"waveforms": "x"}):
        with pytest.raises(ConvertError):
            export_root(run_file, tmp_path / "x.root", **kw)
    assert not list(tmp_path.glob("x.root*"))


def test_cli_convert_to_root(run_file, tmp_path, capsys):
    out = tmp_path / "c.root"
    assert (
        main(["convert", str(run_file), str(out), "--fill", "zero", "--pressure", "1.4", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)["convert"]
    assert report["events"] == 3 and report["counters"]["run"]["detector_pressure_bar"] == 1.4
    with uproot.open(out) as f:
        assert f["events"].num_entries == 3


def test_a_capture_exports_like_its_run(run_file, tmp_path):
    """A capture is read through open_run like any run: same events, same ROOT content."""
    from agetdaq.protocol.encode import encode_events
    from agetdaq.protocol.pcap import write_pcap

    data = encode_events(_events())
    board, pc = ("10.0.0.2", 1122), ("10.0.0.1", 40000)
    write_pcap(tmp_path / "c.pcap", [(START + 0.01 * i, board, pc, d) for i, d in enumerate(data)])
    assert main(["convert", str(tmp_path / "c.pcap"), str(tmp_path / "c.root"), "--fill", "0"]) == 0
    export_root(run_file, tmp_path / "h.root", fill=0)
    with uproot.open(tmp_path / "c.root") as c, uproot.open(tmp_path / "h.root") as h:
        for name in ("signal_ids", "signal_values", "card_timestamp", "event_count", "event_id"):
            assert c["events"][name].array().tolist() == h["events"][name].array().tolist()
        assert c["run"]["timestamp"].array().tolist() == [START * 1000]


# REST's TRestRawFeminosRootToSignalProcess and feminos-daq's own readers bind vector pointers
CPP_READER = r"""
#include <TFile.h>
#include <TTree.h>
#include <string>
#include <vector>
namespace agetdaq_test {
struct ReadBack {
    int status_ids = -99, status_values = -99, status_ts = -99, status_name = -99;
    std::vector<unsigned long long> timestamps;
    std::vector<std::vector<unsigned short>> ids, values;
    std::string run_name, ids_class, values_class;
    unsigned long long run_number = 0;
};
ReadBack read(const char* path) {
    ReadBack out;
    TFile f(path);
    auto* events = f.Get<TTree>("events");
    std::vector<unsigned short>* ids = nullptr;
    std::vector<unsigned short>* values = nullptr;
    unsigned long long timestamp = 0;
    out.status_ids = events->SetBranchAddress("signal_ids", &ids);
    out.status_values = events->SetBranchAddress("signal_values", &values);
    out.status_ts = events->SetBranchAddress("timestamp", &timestamp);
    out.ids_class = events->GetBranch("signal_ids")->GetClassName();
    out.values_class = events->GetBranch("signal_values")->GetClassName();
    for (Long64_t i = 0; i < events->GetEntries(); ++i) {
        events->GetEntry(i);
        out.timestamps.push_back(timestamp);
        out.ids.push_back(*ids);
        out.values.push_back(*values);
    }
    auto* run = f.Get<TTree>("run");
    std::string* name = nullptr;
    out.status_name = run->SetBranchAddress("name", &name);
    run->SetBranchAddress("number", &out.run_number);
    run->GetEntry(0);
    out.run_name = *name;
    return out;
}
}
"""


def test_cpp_reader_binds_vector_pointers_like_rest(run_file, tmp_path):
    out = tmp_path / "cpp.root"
    export_root(run_file, out, fill="zero")
    if not hasattr(ROOT, "agetdaq_test"):
        assert ROOT.gInterpreter.Declare(CPP_READER)
    got = ROOT.agetdaq_test.read(str(out))
    assert (got.status_ids, got.status_values, got.status_ts, got.status_name) == (0, 0, 0, 0)
    assert got.ids_class == "vector<unsigned short>" == got.values_class
    assert got.run_number == 7 and got.run_name == "run"
    with RunFile(run_file) as h5:
        want = list(h5.iter_events())
    assert len(got.ids) == len(want) == 3
    assert list(got.timestamps) == [START * 1000] * 3
    for ids, values, ev in zip(got.ids, got.values, want):
        chans = sorted(ev.channels, key=lambda c: c.signal_id)
        assert list(ids) == [c.signal_id for c in chans]
        block = np.array(list(values), dtype=np.uint16).reshape(len(chans), 512)
        for row, c in zip(block, chans):
            expect = np.zeros(512, np.uint16)
            expect[c.bins] = c.adc
            assert np.array_equal(row, expect)


def test_block_kernels_match_their_twins():
    from agetdaq.readout.store.rootblocks import fill_values, place_samples, place_samples_py

    rng = np.random.default_rng(4)
    counts = rng.integers(0, 40, 30)
    starts = np.cumsum(counts) - counts
    bins = rng.integers(0, 600, int(counts.sum())).astype(np.uint16)  # some past bin 511
    adc = rng.integers(0, 4096, int(counts.sum())).astype(np.uint16)
    for fill in ("baseline", "zero", 250):
        fills = fill_values(starts, counts, adc, fill)
        a, b = np.empty((30, 512), np.uint16), np.empty((30, 512), np.uint16)
        assert place_samples(starts, counts, bins, adc, fills, a) == place_samples_py(
            starts, counts, bins, adc, fills, b
        )
        assert np.array_equal(a, b)
        for k in range(30):  # the fill of each channel is the per-event rule of fill_value
            s = slice(starts[k], starts[k] + counts[k])
            assert fills[k] == (fill_value(adc[s], fill) if counts[k] or fill != "baseline" else 0)


def test_progress_bar_on_a_terminal(run_file, tmp_path):
    """On a terminal (a pty) the conversion draws a progress bar on stderr."""
    import os
    import pty
    import subprocess
    import sys

    main_fd, tty = pty.openpty()
    code = (
        "from agetdaq.readout.store.rootexport import export_root; "
        f"export_root({str(run_file)!r}, {str(tmp_path / 'p.root')!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=tty, stdout=subprocess.DEVNULL)
    os.close(tty)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(120) == 0
    os.close(main_fd)
    assert b"run.h5" in seen and b"\x1b[" in seen  # the bar, drawn with terminal controls


@pytest.mark.parametrize("source", ["raw", "stored", "aqs"])
def test_export_streams_block_by_block(run_file, tmp_path, monkeypatch, source):
    """Memory is bounded by the block, not the input: with blocks of one event's samples the
    conversion goes event by event, no block holds more than its event, and the file is the
    same as with the default ~2 M-sample blocks. (One-event blocks, e.g. the last block of a
    run, once failed: a one-row view of the event table kept the table's row stride.)"""
    from agetdaq.readout.store import rootblocks, rootexport

    src = tmp_path / "R00007_cal.aqs" if source == "aqs" else run_file
    kw = {} if source == "aqs" else {"waveforms": source}
    export_root(src, tmp_path / "big.root", fill="zero", **kw)
    seen: list[tuple[int, int]] = []

    def recording(make):
        def blocks(*args):
            for b in make(*args):
                seen.append((len(b.time_ms), b.values.size))
                yield b

        return blocks

    monkeypatch.setattr(rootblocks, "BLOCK_SAMPLES", rootblocks.N_BINS)
    monkeypatch.setattr(rootexport, "h5_blocks", recording(rootblocks.h5_blocks))
    monkeypatch.setattr(rootexport, "decoded_blocks", recording(rootblocks.decoded_blocks))
    export_root(src, tmp_path / "small.root", fill="zero", **kw)
    per_event = [len(e.channels) * rootblocks.N_BINS for e in _events()]
    if source == "aqs":
        seen = [s for s in seen if s[0]]  # the decoded stream ends with an empty block
    assert seen == [(1, n) for n in per_event]
    with uproot.open(tmp_path / "big.root") as big, uproot.open(tmp_path / "small.root") as small:
        for name in ("signal_ids", "signal_values", "event_id", "card_timestamp", "timestamp"):
            assert big["events"][name].array().tolist() == small["events"][name].array().tolist()
