"""Scenario 3, a drift, real processes only: ``agetdaq emulate --truth`` whose gain falls from
100 % to 50 % within one run, a calibration run taken with ``agetdaq run --publish`` (ended with
Ctrl-C, as the crew does), the monitor attached to its stream (monitor only, no run control), a
second subscriber keeping every ``calib`` message, then ``agetdaq calibrate`` on the run file.

The live gain (the stream's trend points and live fits, the monitor's one gain number and its
alarm) and the offline trend follow the truth: each point against the mean true gain of the
X-rays of its time slice (truth matched to the file's events by event counter and timestamp).
(test_gui_drift_live.py checks the same drift through ``serve`` and the monitor's run control.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from daq_procs import PY, DaqProcesses
from scenario_crew import Monitor, truth_of, wait_for
from stream_audit import AuditSubscriber

from agetdaq.readout.store.reader import RunFile

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(400)]
DELAY_S, DURATION_S, AFTER_S = 30.0, 30.0, 6.0  # emulator time: the run starts well before
SCENARIO = f"""base = "gain-drift"
description = "gain 100 % -> 50 % (geometric) from t = {DELAY_S} s in {DURATION_S} s"
[source.fe55]
rate_hz = 150.0
[gain]
end = 0.5
delay_s = {DELAY_S}
duration_s = {DURATION_S}
"""
SETTINGS = """[daq]
heartbeat_s = 0.5
[calibration]
slice_xrays = 400
slice_minutes = 0.0
window_xrays = 600
window_minutes = 0.25
window_min_xrays = 200
live_interval_s = 1.0
"""


@pytest.fixture(scope="module")
def drift(tmp_path_factory, qapp) -> dict:
    tmp = tmp_path_factory.mktemp("drift")
    (tmp / "drift.toml").write_text(SCENARIO)
    truth_path = tmp / "truth.jsonl"
    procs = DaqProcesses(tmp, str(tmp / "drift.toml"), SETTINGS,
                         emulate_args=("--truth", str(truth_path), "--bank", "0"))  # fmt: skip
    audit = AuditSubscriber(procs.stream)
    audit.start()
    monitor = Monitor([(procs.stream, None)])
    run = None
    out: dict = {"tmp": tmp}
    t0 = time.monotonic()
    try:
        procs.start_emulator()
        procs.wait_board()
        cmd = ["run", "--board", procs.board, "--data-dir", "data", "--config", str(procs.settings),
               "--publish", procs.stream, "--script", "run", "--run-type", "calibration",
               "-o", "drift.h5", "--json"]  # fmt: skip
        run = subprocess.Popen([*PY, *cmd], cwd=tmp, stdout=subprocess.PIPE,
                               stderr=procs._log, text=True)  # fmt: skip
        monitor.start()
        wait_for(lambda: monitor.model.state() == "running", 90, "the run on the stream")
        out["started_at_model_s"] = time.monotonic() - procs.board_up
        end = procs.board_up + DELAY_S + DURATION_S + AFTER_S
        wait_for(lambda: time.monotonic() > end or run.poll() is not None, 120, "the drift")

        def fell() -> bool:  # the live window lags more on a busy machine
            monitor.refresh()
            gain_rel = monitor.model.metrics()["gain_rel"]
            return run.poll() is not None or (gain_rel is not None and gain_rel < 0.6)

        wait_for(fell, 60, "the monitor's gain to follow the fall below 0.6")
        m = monitor.model
        out["monitor"] = {
            "gain": m.metrics()["gain_rel"],
            "alarms": [(a.rule.name, a.severity) for a in m.alarms.active],
            "history": [(e.kind, e.rule, e.severity) for e in m.alarms.history],
        }
        run.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, _ = run.communicate(timeout=60)
        out["run_rc"], out["run"] = run.returncode, json.loads(stdout)
        time.sleep(0.5)
    finally:
        monitor.close()
        if run is not None and run.poll() is None:
            run.kill()
            run.wait(10)
        procs.close()
        audit.close()
    done = procs.cli("calibrate", "drift.h5", "--every", "400", "--output", "cal", "--no-plots",
                     "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out["calib"] = json.loads(done.stdout)
    out["trend"] = json.loads((tmp / "cal" / "trend.json").read_text())["points"]
    out["calib_msgs"] = audit.calib
    out["audit"] = audit.audit
    with RunFile(tmp / "drift.h5") as f:
        ev = f.events()
    truth = truth_of(ev, procs.truth_runs(truth_path))
    kinds = [truth[int(c)] for c in ev["event_count"]]
    xray = np.array([t.get("kind") == "xray" for t in kinds])
    out["xray_t"] = ev["time_ns"][xray].astype(np.float64) * 1e-9
    out["xray_gain"] = np.array([t["gain"] for t, x in zip(kinds, xray) if x])
    print(f"the drift took {time.monotonic() - t0:.0f} s; the run began at model time "
          f"{out['started_at_model_s']:.0f} s")  # fmt: skip
    return out


def _true_gain(d: dict, t_start: float, t_end: float) -> float:
    sel = (d["xray_t"] >= t_start) & (d["xray_t"] <= t_end)
    assert sel.sum() > 50, (t_start, t_end)
    return float(d["xray_gain"][sel].mean())


def _against_truth(
    d: dict, points: list[dict], start: str = "t_start", end: str = "t_end"
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted and true gains relative to the first point's (the DAQ's reference)."""
    ref = _true_gain(d, points[0][start], points[0][end])
    true_rel = np.array([_true_gain(d, p[start], p[end]) / ref for p in points])
    return np.array([p["gain_rel"] for p in points]), true_rel


def _stream_points(d: dict) -> list[dict]:
    """The stream's fitted trend points. A slice over which the gain moved is split where it
    changed and comes as its parts (``part`` "k/n"); a part too short is not fitted (not ok,
    'too few X-rays'), nor are the X-rays around a change (the judge leaves out those whose side
    of the cut is uncertain); the run's last slice may be too short."""
    points = [h for h in d["calib_msgs"] if h["kind"] == "point"]
    bad = [(h["part"], h["reason"]) for h in points if not h["ok"]]
    assert all(r.startswith("too few") or (k and "around the change" in r) for k, r in bad), bad
    good = [h for h in points if h["ok"]]
    assert len(good) >= 8 and good[0] is points[0], [h["reason"] for h in points]
    return good


def test_the_run_took_the_whole_drift(drift):
    assert drift["run_rc"] == 0 and drift["run"]["stop_reason"] == "interrupted (signal)"
    assert drift["started_at_model_s"] < DELAY_S  # the gain fell during the run
    assert drift["xray_gain"].max() == pytest.approx(1.0, abs=0.01)
    assert drift["xray_gain"].min() < 0.52
    assert drift["audit"].malformed == 0 and drift["audit"].gaps == 0


def test_the_streams_trend_points_follow_the_truth(drift):
    points = _stream_points(drift)
    fitted, true_rel = _against_truth(drift, points)
    assert true_rel.min() < 0.6
    assert np.all(np.abs(fitted / true_rel - 1) < 0.04), np.c_[fitted, true_rel]
    print("stream points fitted/true:", np.round(fitted / true_rel, 3).tolist())


def test_the_live_gain_and_the_monitor_follow_to_50_percent(drift):
    points = _stream_points(drift)
    live = [h for h in drift["calib_msgs"] if h["kind"] == "live" and h["ok"]]
    assert len(live) >= 10
    ref = _true_gain(drift, points[0]["t_start"], points[0]["t_end"])
    last = live[-1]
    true_last = _true_gain(drift, last["t_start"], last["t_end"]) / ref
    assert last["gain_rel"] == pytest.approx(true_last, rel=0.04)
    seen = drift["monitor"]
    assert seen["gain"] == pytest.approx(true_last, rel=0.06) and seen["gain"] < 0.6
    assert ("gain-drift", "alarm") in seen["alarms"]
    kinds = [(k, s) for k, r, s in seen["history"] if r == "gain-drift"]
    assert kinds[:2] == [("fired", "warning"), ("escalated", "alarm")]
    print(f"live gain {last['gain_rel']:.3f} (truth {true_last:.3f}), monitor {seen['gain']:.3f}")


def test_agetdaq_calibrate_finds_the_same_drift(drift):
    trend = drift["trend"]  # split slices replaced by their parts
    # unfitted parts of a split slice: too small, or the X-rays around a change (the judge leaves
    # out those whose side of the cut is uncertain)
    unfitted = [p["reason"] for p in trend if not p["ok"]]
    assert all(r.startswith("too few") or "around the change" in r for r in unfitted), unfitted
    points = [p for p in trend if p["ok"]]
    assert len(points) >= 8 and trend[0] is points[0]
    fitted, true_rel = _against_truth(drift, points, "t_start_s", "t_stop_s")
    assert true_rel.min() < 0.6
    assert np.all(np.abs(fitted / true_rel - 1) < 0.04), np.c_[fitted, true_rel]
    print("calibrate points fitted/true:", np.round(fitted / true_rel, 3).tolist())
