"""``agetdaq calibrate`` on real run files, the run-file reader behind it, and the online
``calib`` stream feed (readout/analysis/calibfeed.py) over a real ZeroMQ socket on 127.0.0.1.

Run files hold events made by the emulator's physics through the real readout chain
(tests/emulated_fe55.py): daily calibration runs of the gain-drift scenario at 100 %, 70 % and
40 % gain, written with the DAQ's RunWriter.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq, drift_time_for_gain, pedestal_rows, write_run

from agetdaq.readout.analysis.calibfeed import CalibFeed
from agetdaq.readout.analysis.calibration import TrendConfig
from agetdaq.readout.analysis.calibration import plots as calib_plots
from agetdaq.readout.analysis.calibration.runs import (
    EventFilter,
    RunClock,
    RunInputError,
    SliceBuffer,
    calibration_events,
    open_runs,
)
from agetdaq.readout.cli import main
from agetdaq.readout.schema import NOT_PROCESSED
from agetdaq.readout.transport.stream import Publisher, Subscriber

DAY = 86400.0
THRESHOLD = 200.0
GAINS = (1.0, 0.7, 0.4)
PNGS = ("spectrum", "gain_vs_time", "resolution_vs_time", "threshold_vs_time", "gainmap")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("calib")
    daq = EmulatedDaq("gain-drift", seed=21, energy_min_adc=THRESHOLD)
    out: dict = {"dir": tmp, "files": [], "rows": []}
    for day, g in enumerate(GAINS):
        t0 = drift_time_for_gain(daq.scenario, g)
        rows, _ = daq.calibration_run(600, t0, duration_s=0.5, run_start_unix=1.7e9 + day * DAY)
        out["files"].append(
            write_run(tmp / f"day{day}.h5", rows, day + 1, "calibration", THRESHOLD)
        )
        out["rows"].append(rows)
    ref_rows, _ = daq.calibration_run(600, 0.0, run_start_unix=1.7e9 - DAY)
    out["reference"] = write_run(tmp / "ref.h5", ref_rows, 99, "calibration", THRESHOLD)
    noise, _ = daq.rows(["pedestal"] * 40, np.zeros(40))
    out["noise"] = write_run(tmp / "noise.h5", noise, 100, "calibration")
    # a run that holds a gain step (70 % then 50 %), with a pedestal table flagging two strips
    a, _ = daq.calibration_run(350, drift_time_for_gain(daq.scenario, 0.7), duration_s=0.2)
    b, _ = daq.calibration_run(350, drift_time_for_gain(daq.scenario, 0.5), duration_s=0.2)
    b["timestamp"] += a["timestamp"][-1] + 1000
    b["time_ns"] = a["time_ns"][-1] + 1000 * 20 + (b["time_ns"] - b["time_ns"][0])
    ped = pedestal_rows(daq)
    ped["flags"][[60, 180]] |= 1  # X60 and Y60 flagged dead
    out["step"] = write_run(tmp / "step.h5", np.concatenate([a, b]), 101, "calibration",
                            THRESHOLD, ped)  # fmt: skip
    return out


def _trend(outdir: Path) -> list[dict]:
    with (outdir / "trend.csv").open() as f:
        return list(csv.DictReader(f))


def test_daily_runs_give_one_point_each_in_time_order(runs, tmp_path, capsys) -> None:
    files = [str(p) for p in runs["files"]]
    out = tmp_path / "out"
    assert main(["calibrate", files[2], files[0], files[1], "--output", str(out)]) == 0
    rows = _trend(out)
    assert [r["run"] for r in rows] == ["day0.h5", "day1.h5", "day2.h5"]
    gain = np.array([float(r["gain_rel"]) for r in rows])
    assert gain == pytest.approx(GAINS, abs=0.03)
    t = np.array([float(r["t_start_s"]) for r in rows])
    assert np.diff(t) == pytest.approx([DAY, DAY], abs=60)
    assert all(r["ok"] == "True" and int(r["n_xrays"]) > 400 for r in rows)
    js = json.loads((out / "trend.json").read_text())["points"]
    assert [p["gain_rel"] for p in js] == pytest.approx(gain.tolist())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["points_ok"] == 3 and summary["threshold_adc"] == THRESHOLD
    gm = json.loads((out / "gainmap.json").read_text())
    assert (gm["nx"], gm["ny"]) == (6, 6) and len(gm["regions"]) == 36
    for name in PNGS:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "day2.h5" in capsys.readouterr().out


def test_a_run_with_a_gain_step_is_split_and_reported_with_its_parts(runs, tmp_path) -> None:
    """The run's one slice holds a 70 % -> 50 % step: trend.csv holds its two parts (flagged,
    each its own gain) and between them the X-rays within the cut's uncertainty (failed, with
    the reason), trend.json the split slice with its reason, slices/ its spectrum; the X-rays
    next to the strips the run's pedestal table flags are left out and counted."""
    out = tmp_path / "out"
    assert main(["calibrate", str(runs["step"]), "-o", str(out)]) == 0
    rows = _trend(out)
    assert [(r["status"], r["part"]) for r in rows] == [
        ("flagged", "1/3"), ("failed", "2/3"), ("flagged", "3/3")
    ]  # fmt: skip
    assert "X-rays around the change" in rows[1]["reason"]
    assert float(rows[2]["gain"]) / float(rows[0]["gain"]) == pytest.approx(0.5 / 0.7, abs=0.02)
    (slice_,) = json.loads((out / "trend.json").read_text())["slices"]
    assert slice_["status"] == "split" and "inside the slice" in slice_["reason"]
    assert slice_["gain"] is None and slice_["parts"] == 3
    assert (out / "slices" / "slice_0000.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slices"]["split"] == 1 and summary["slices"]["good_points"] == 2
    assert summary["bad_strips"]["names"] == ["X60", "Y60"]
    assert summary["xrays_next_to_bad_strips"] > 0
    gm = json.loads((out / "gainmap.json").read_text())
    assert gm["bad_strips"]["names"] == ["X60", "Y60"]
    assert sum(r["excluded"] for r in gm["regions"]) == summary["xrays_next_to_bad_strips"]


def test_threshold_in_kev_from_the_daq_threshold_of_the_run(runs, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["calibrate", str(runs["files"][2]), "-o", str(out), "--no-plots"]) == 0
    (row,) = _trend(out)
    expect = 5.90 * THRESHOLD / float(row["peak_adc"])
    assert float(row["threshold_kev_adc"]) == pytest.approx(expect, rel=1e-6)
    assert not list(out.glob("*.png"))
    out2 = tmp_path / "out2"
    args = ["calibrate", str(runs["files"][2]), "-o", str(out2), "--no-plots"]
    assert main([*args, "--threshold-adc", "100"]) == 0
    assert float(_trend(out2)[0]["threshold_kev_adc"]) == pytest.approx(expect / 2, rel=1e-6)


def test_reference_run_sets_the_relative_gain(runs, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["calibrate", str(runs["files"][1]), "--reference", str(runs["reference"])]
    assert main([*args, "-o", str(out), "--no-plots"]) == 0
    (row,) = _trend(out)
    assert float(row["gain_rel"]) == pytest.approx(0.7, abs=0.025)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["fit"]["ok"] is True


def test_every_n_xrays_and_slices_never_span_two_runs(runs, tmp_path) -> None:
    out = tmp_path / "out"
    files = [str(p) for p in runs["files"][:2]]
    assert main(["calibrate", *files, "--every", "300", "-o", str(out), "--no-plots"]) == 0
    rows = _trend(out)
    per_run = {r["run"]: [int(x["n_xrays"]) for x in rows if x["run"] == r["run"]] for r in rows}
    assert set(per_run) == {"day0.h5", "day1.h5"}
    for counts in per_run.values():
        assert counts[:-1] == [300] * (len(counts) - 1) and counts[-1] <= 300
    full = [r for r in rows if int(r["n_xrays"]) == 300]
    assert all(r["ok"] == "True" for r in full)


def test_minutes_slices_follow_event_time(runs, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["calibrate", str(runs["files"][0]), "--minutes", "0.002", "-o", str(out)]
    assert main([*args, "--no-plots"]) == 0
    rows = _trend(out)
    assert len(rows) >= 3
    for r in rows:
        assert float(r["t_stop_s"]) - float(r["t_start_s"]) < 0.12 + 1e-6


def test_missing_and_bad_files_give_a_clear_message_and_no_output(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    out = tmp_path / "out"
    code = main(["calibrate", str(tmp_path / "missing.h5"), str(bad), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1  # unreadable input
    assert "missing.h5: no such file" in err and "bad.h5" in err
    assert not out.exists()


def test_a_run_without_xrays_exits_non_zero_with_the_reason(runs, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["calibrate", str(runs["noise"]), "-o", str(out), "--no-plots"]) == 1
    (row,) = _trend(out)
    assert row["ok"] == "False" and row["reason"]
    assert "no slice could be fitted" in capsys.readouterr().err


def test_without_matplotlib_tables_are_written_and_the_extra_is_named(
    runs, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(calib_plots, "available", lambda: False)
    out = tmp_path / "out"
    assert main(["calibrate", str(runs["files"][0]), "-o", str(out)]) == 0
    assert "install agetdaq[plots]" in capsys.readouterr().err
    assert (out / "trend.csv").exists() and (out / "gainmap.csv").exists()
    assert not list(out.glob("*.png"))


def test_bad_options_are_refused(runs, tmp_path, capsys) -> None:
    f = str(runs["files"][0])
    assert main(["calibrate", f, "--regions", "6by6", "-o", str(tmp_path / "a")]) == 2
    assert "--regions" in capsys.readouterr().err
    cfg = tmp_path / "cal.toml"
    cfg.write_text("[calibration.events]\nno_such_key = 1\n")
    assert main(["calibrate", f, "--config", str(cfg), "-o", str(tmp_path / "b")]) == 2
    assert "no_such_key" in capsys.readouterr().err


# ---- the reader ----------------------------------------------------------------------------


def test_runs_are_ordered_by_their_first_event(runs) -> None:
    sources = open_runs(list(reversed(runs["files"])))
    assert [s.path.name for s in sources] == ["day0.h5", "day1.h5", "day2.h5"]
    assert all(s.threshold_adc == THRESHOLD and s.run_type == "calibration" for s in sources)
    assert sources[1].first_time_s - sources[0].first_time_s == pytest.approx(DAY, abs=60)


def test_event_filter_rejects_what_cannot_be_an_xray(runs) -> None:
    rows = runs["rows"][0].copy()
    base = EventFilter().accept(rows)
    assert base.mean() > 0.8
    i = int(np.flatnonzero(base)[0])
    for field, value in (("build_flags", NOT_PROCESSED), ("trig", False), ("x_mm", 29.5)):
        r = rows[i : i + 1].copy()
        r[field] = value
        assert not EventFilter().accept(r)[0], field
    r = rows[i : i + 1].copy()
    r["sigma_x"] = 0.8  # a wide cluster: a piece of muon track, not a 55Fe cloud
    assert not EventFilter().accept(r)[0]
    assert EventFilter(reclassify=False).accept(r)[0] == (r["cls"][0] == 1)
    ev = calibration_events(rows, np.zeros(len(rows)))
    assert np.array_equal(np.isfinite(ev["energy_adc"]), base)


def test_run_clock_falls_back_to_host_time_after_a_timestamp_restart(runs) -> None:
    rows = runs["rows"][0][:10].copy()
    clock = RunClock()
    t = clock.times(rows)
    host = rows["time_ns"] * 1e-9
    assert t == pytest.approx(host, abs=0.05)
    later = rows.copy()
    later["timestamp"] = 5
    assert clock.times(later) == pytest.approx(later["time_ns"] * 1e-9)
    assert clock.host_only


def test_slice_buffer_hands_each_closed_slice_its_own_events() -> None:
    buf = SliceBuffer()
    e = np.arange(10.0)
    events = {"energy_adc": e, "x_mm": e, "y_mm": e}
    buf.add(events, e % 2 == 0)  # selected: 0 2 4 6 8
    first = buf.take(5)  # events 0..4
    assert first["energy_adc"].tolist() == [0, 2, 4]
    buf.add({k: v + 10 for k, v in events.items()}, np.ones(10, bool))
    assert buf.take(7)["energy_adc"].tolist() == [6, 8, 10, 11]


def test_open_runs_refuses_a_file_without_features(tmp_path) -> None:
    import h5py

    p = tmp_path / "old.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "agetdaq-run"
        f.create_dataset("events", data=np.zeros(3, [("event_id", "<u8")]))
    with pytest.raises(RunInputError, match="lacks"):
        open_runs([p])


# ---- the online feed -----------------------------------------------------------------------


@pytest.fixture
def stream():
    pub = Publisher("tcp://127.0.0.1:*")
    sub = Subscriber(pub.address, topics=("calib", "status"))
    end = time.monotonic() + 5
    while time.monotonic() < end:  # slow joiner: wait until the subscription is through
        pub.publish("status", {})
        if sub.recv(50) is not None:
            break
    yield pub, sub
    sub.close()
    pub.close()


def _messages(sub: Subscriber, n: int, limit_s: float = 5.0) -> list:
    out, end = [], time.monotonic() + limit_s
    while len(out) < n and time.monotonic() < end:
        msg = sub.recv(50)
        if msg is not None and msg.topic == "calib":
            out.append(msg)
    return out


def _feed(feed: CalibFeed, rows: np.ndarray, batch: int = 32) -> None:
    for a in range(0, len(rows), batch):
        feed.on_rows(rows[a : a + batch])


def test_calib_feed_publishes_closed_slices_of_calibration_runs_only(runs, stream) -> None:
    pub, sub = stream
    feed = CalibFeed(pub, TrendConfig(slice_xrays=250, threshold_adc=THRESHOLD))
    feed.begin_run(5, "background")
    _feed(feed, runs["rows"][0])
    assert feed.published == 0 and feed.trend is None
    feed.begin_run(6, "calibration")
    _feed(feed, runs["rows"][0])
    n_full = len(feed.points)
    assert n_full >= 2
    feed.close_run()
    msgs = _messages(sub, n_full + 1)
    assert len(msgs) == n_full + 1 == feed.published and feed.errors == 0
    h = msgs[0].header
    for key in ("slice", "t_start", "t_end", "counts", "ok", "peak_adc", "gain_rel", "fwhm_rel",
                "threshold_kev", "reason"):  # fmt: skip
        assert key in h
    assert h["ok"] and h["gain_rel"] == pytest.approx(1.0) and h["counts"] == 250
    assert h["fwhm_rel"] == pytest.approx(0.18, rel=0.15)
    assert h["t_start"] == pytest.approx(1.7e9, abs=5)
    assert int(msgs[0].arrays["spectrum"].sum()) == 250
    assert msgs[0].arrays["edges"].shape == (msgs[0].arrays["spectrum"].size + 1,)
    assert [m.header["slice"] for m in msgs] == list(range(n_full + 1))
    # the next day: the reference is kept, the gain has dropped
    feed.begin_run(7, "calibration")
    _feed(feed, runs["rows"][2])
    feed.close_run()
    day3 = [p for p in feed.points if p.n_xrays == 250]
    assert day3 and all(p.gain_rel == pytest.approx(0.4, abs=0.03) for p in day3)


def test_calib_feed_tick_closes_a_slice_the_data_stopped_feeding(runs, stream) -> None:
    pub, sub = stream
    feed = CalibFeed(pub, TrendConfig(slice_xrays=10_000, slice_minutes=0.01))
    feed.begin_run(8, "calibration")
    _feed(feed, runs["rows"][0][:200])
    deadline = time.monotonic() + 5
    while not feed.points and time.monotonic() < deadline:
        time.sleep(0.01)
        feed.tick()
    assert len(feed.points) == 1 and feed.points[0].n_events == 200
    assert _messages(sub, 1)[0].header["counts"] == feed.points[0].n_xrays


def test_calib_feed_survives_bad_rows(stream) -> None:
    pub, _ = stream
    feed = CalibFeed(pub)
    feed.begin_run(9, "calibration")
    feed.on_rows(np.zeros(4, [("event_id", "<u8")]))
    assert feed.errors == 1 and feed.points == []
    with pytest.raises(ValueError):
        feed.set_reference(0.0)
