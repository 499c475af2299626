"""End-to-end acquisition against the BEC emulator over 127.0.0.1 (real sockets, files, ZMQ)."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest

from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.simulation.emulator.truth import read_truth
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.transport.stream import Subscriber

pytestmark = pytest.mark.network


def _scenario(fe55_hz: float, muon_hz: float, name: str = "default") -> Scenario:
    data = Scenario.load(name).as_dict()
    data.pop("path", None)
    data["source"] = {"fe55": data.pop("fe55"), "muon": data.pop("muon")}
    data["source"]["fe55"].update(rate_hz=fe55_hz, area="full")
    data["source"]["muon"]["rate_hz"] = muon_hz
    return Scenario.from_dict(data, "test")


def _run(acq: Acquisition, limit_s: float = 60.0) -> None:
    end = time.monotonic() + limit_s
    while acq.state == "running" and time.monotonic() < end:
        time.sleep(0.05)
        acq.poll()
    assert acq.state != "running", "run did not stop by itself"


@pytest.fixture(scope="module")
def physics_run(tmp_path_factory):
    """One background-style run with X-rays and muons; shared by several assertions."""
    tmp = tmp_path_factory.mktemp("acq")
    truth = tmp / "truth.jsonl"
    emu = Emulator(_scenario(150.0, 40.0), port=0, seed=3, truth_path=truth).start()
    settings = Settings().with_daq(
        bec=f"127.0.0.1:{emu.address[1]}",
        data_dir=str(tmp),
        store_waveforms="events",
        shed_fill=1.0,  # physics checks need every event processed, whatever the machine load
    )
    acq = Acquisition(settings, publish="tcp://127.0.0.1:*")
    sub = Subscriber(acq.publisher.address, topics=("status", "summary", "hist", "event"))
    try:
        acq.configure("run")
        acq.start_run("background", "e2e", tmp / "run.h5", events=1500, seconds=40)
        messages = []
        end = time.monotonic() + 60
        while acq.state == "running" and time.monotonic() < end:
            acq.poll()
            msg = sub.recv(20)
            if msg is not None:
                messages.append(msg)
        counters = acq.counters()
    finally:
        acq.close()
        emu.stop()
        sub.close()
    return tmp / "run.h5", read_truth(truth), counters, messages


def test_every_event_reaches_the_file_with_its_counter(physics_run):
    path, truth, counters, _ = physics_run
    with RunFile(path) as f:
        ev = f.events()
        assert f.final()["stop_reason"].startswith("1500 events")
    assert len(ev) >= 1500
    counts = ev["event_count"].astype(np.int64)
    assert np.array_equal(counts, np.arange(counts[0], counts[0] + len(counts)))
    by_count = {t["event_count"]: t for t in truth}
    assert all(int(c) in by_count for c in counts)
    assert counters["builder"]["missing"] == 0
    assert counters["receiver"]["ring_full_drops"] == 0
    assert counters["decoder"] == {}


def test_xray_centroids_and_classes_match_truth(physics_run):
    path, truth, _, _ = physics_run
    by_count = {t["event_count"]: t for t in truth}
    with RunFile(path) as f:
        ev = f.events()
    kinds = [by_count[int(c)]["kind"] for c in ev["event_count"]]
    main_xray = np.array(
        [
            k == "xray" and by_count[int(c)].get("line") in ("Ka", "Kb")
            for k, c in zip(kinds, ev["event_count"])
        ]
    )
    # corner clippers (< 10 mm of track) are X-ray shaped: a veto, not topology, rejects them
    muon = np.array(
        [
            k == "muon" and by_count[int(c)]["track_length_mm"] >= 10
            for k, c in zip(kinds, ev["event_count"])
        ]
    )
    assert main_xray.sum() > 300 and muon.sum() > 40
    assert np.mean(ev["cls"][main_xray] == 1) >= 0.95
    assert np.mean(ev["cls"][muon] != 1) >= 0.95
    sel = main_xray & (ev["cls"] == 1)
    tx = np.array([by_count[int(c)]["x_mm"] for c in ev["event_count"][sel]])
    ty = np.array([by_count[int(c)]["y_mm"] for c in ev["event_count"][sel]])
    assert np.median(np.abs(ev["x_mm"][sel] - tx)) < 0.3
    assert np.median(np.abs(ev["y_mm"][sel] - ty)) < 0.3


def test_stored_waveforms_are_the_raw_adc_of_the_event(physics_run):
    path, truth, _, _ = physics_run
    by_count = {t["event_count"]: t for t in truth}
    with RunFile(path) as f:
        events = list(f.iter_events(0, 200))
        rows = f.events(0, 200)
        strips_stored = f.channels()
    n_checked = 0
    for e, row in zip(events, rows):
        t = by_count[e.event_count]
        if row["trig"] and t["kind"] == "xray":
            stored = set(strips_stored["strip"][strips_stored["event_row"] == row["event_id"]])
            assert set(t["strips_x"]) & stored and set(t["strips_y"]) & stored
            n_checked += 1
    assert n_checked > 20


def test_stream_numbers_messages_and_carries_the_schema(physics_run):
    _, _, _, messages = physics_run
    topics = {m.topic for m in messages}
    assert {"status", "summary"} <= topics
    status = [m for m in messages if m.topic == "status"]
    assert all(k in status[-1].header for k in ("state", "events", "losses", "disk_free_gb"))
    seqs = [m.seq for m in messages if m.topic == "summary"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    summary = next(m for m in messages if m.topic == "summary" and m.header["n"] > 0)
    assert {"event_id", "class", "energy_adc", "x_mm", "y_mm"} <= set(summary.arrays)


def test_pedestal_run_matches_emulator_truth(tmp_path):
    emu = Emulator("pedestal", port=0, seed=5).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp_path))
    acq = Acquisition(settings)
    try:
        acq.start_run("pedestal", "", tmp_path / "ped.h5", events=300, seconds=60)
        _run(acq)
        rows = acq.pedestal_rows
        physics = emu.card.physics
    finally:
        acq.close()
        emu.stop()
    assert rows is not None
    strips = rows[rows["strip"] >= 0]
    from agetdaq.protocol.mapping import StripMapping

    m = StripMapping.default()
    true_mean = physics.pedestal[m.chip, m.aget_channel - 1][strips["strip"]]
    true_noise = physics.noise[m.chip, m.aget_channel - 1][strips["strip"]]
    # the processing removes the common mode with the mean of the chip's 4 FPN channels, whose
    # own noise stays in the data: sum of their variances / 16, added to the strip's own
    fpn_err2 = (physics.noise[:, 64:68] ** 2).sum(axis=1) / 16
    seen = np.sqrt(true_noise**2 + fpn_err2[m.chip][strips["strip"]])
    alive = (strips["flags"] & 1) == 0
    assert np.max(np.abs(strips["mean"] - true_mean)[alive]) < 0.5
    rel = np.abs(strips["sigma"] / seen - 1)[alive]
    assert np.median(rel) < 0.05
    assert np.median(np.abs(strips["sigma"] / true_noise - 1)[alive]) > 0.05  # not the own noise
    with RunFile(tmp_path / "ped.h5") as f:
        assert "pedestals" in f.file["meta_out"]


def test_live_file_readable_and_metrics_served(tmp_path, tcp_port):
    emu = Emulator(_scenario(200.0, 0.0), port=0, seed=7).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp_path))
    acq = Acquisition(settings, metrics_port=tcp_port)
    try:
        acq.configure("run")
        acq.start_run("background", "", tmp_path / "live.h5", seconds=30)
        seen = 0
        end = time.monotonic() + 20
        while time.monotonic() < end and seen == 0:
            acq.poll()
            time.sleep(0.2)
            with RunFile(tmp_path / "live.h5") as f:  # SWMR: the writer is still going
                seen = f.n_events
        acq.poll()
        body = urllib.request.urlopen(f"http://127.0.0.1:{tcp_port}/metrics", timeout=5).read()
        acq.stop_run("test done")
    finally:
        acq.close()
        emu.stop()
    assert seen > 0
    assert b"number_of_events" in body and b"daq_speed_mb_per_sec_now" in body


def test_inspect_and_dump_read_the_run_file(physics_run, capsys):
    import json

    from agetdaq.readout.cli import main

    path, _, _, _ = physics_run
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["events"] >= 1500 and info["stop_reason"].startswith("1500 events")
    assert info["classes"]["xray"] > 300 and info["losses"]["lost_datagrams"] == 0
    assert 1000 < info["xray_peak_adc"] < 5000
    assert main(["dump", str(path), "--json", "--events", "0:3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event_id"] for e in lines] == [0, 1, 2]
    assert all("channels" in e for e in lines)


def test_stop_drains_the_card_so_the_next_run_starts_clean(tmp_path):
    """Full readout (the calibration script) at a rate the link cannot carry: the card's memory
    is full when the run stops. Stopping drains it into the run, so the next run of the same
    Acquisition gets no leftovers (no orphan data, no board restart) and the event counters of
    the two runs follow each other without a gap."""
    emu = Emulator(_scenario(600.0, 0.0), port=0, seed=5).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp_path))
    acq = Acquisition(settings)
    try:
        acq.configure("calibration")  # full readout: the card's memory fills
        files = []
        for k in range(2):
            path = tmp_path / f"run{k}.h5"
            acq.start_run("calibration", f"drain {k}", path, seconds=1.5)
            _run(acq, 30.0)
            assert acq.state == "configured", acq.message
            assert emu.card.ring.pending_words() == 0, "the card still holds data after the stop"
            files.append(path)
            counters = acq.counters()
            assert not {k: v for k, v in counters["decoder"].items() if v}, counters["decoder"]
            assert counters["builder"]["restarts"] == 0
    finally:
        acq.close()
        emu.stop()
    first = 0
    for path in files:
        with RunFile(path) as f:
            counts = [e.event_count for e in f.iter_events()]
        assert len(counts) > 20 and counts == list(range(first, first + len(counts)))
        first += len(counts)


def test_the_daq_s_messages_and_run_file_follow_the_schema(physics_run):
    from agetdaq.readout import schema as S
    from agetdaq.readout.store import open_run

    path, _, _, messages = physics_run
    status = [m for m in messages if m.topic == "status"]
    summaries = [m for m in messages if m.topic == "summary"]
    assert status and summaries
    for m in status:
        assert set(m.header) - set(S.ENVELOPE_FIELDS) <= set(S.STATUS_FIELDS)
        assert set(m.header["class_counts"]) == set(S.CLASS_NAMES)
    assert all(set(m.arrays) == set(S.SUMMARY_ARRAYS) for m in summaries)
    with open_run(path) as run:
        assert run.rows(0, 10).dtype == S.EVENT_DTYPE
        assert run.info.format_version == S.FORMAT_VERSION and run.info.closed


def test_masks_and_the_gain_reference_from_run_control(tmp_path, udp_port):
    """The control handler's mask and reference requests reach the processing and the trend
    (no board needed: nothing is sent to it)."""
    from agetdaq.readout.acquisition.control_handler import handle

    acq = Acquisition(Settings().with_daq(bec=f"127.0.0.1:{udp_port}", data_dir=str(tmp_path)))
    try:
        reply = handle(acq, {"cmd": "mask", "strips": [1, 2, 500], "masked": True})
        assert reply["ok"] and reply["masked"] == [1, 2]
        assert np.isinf(acq.processor.thr_hit[[1, 2]]).all()
        assert np.isfinite(acq.processor.thr_hit[3])
        reply = handle(acq, {"cmd": "mask", "strips": [2], "masked": False})
        assert reply["masked"] == [1] and np.isfinite(acq.processor.thr_hit[2])
        assert handle(acq, {"cmd": "reference", "gain_adc": 41.5})["ok"]
        assert acq.calib.reference_gain == 41.5
    finally:
        acq.close()
