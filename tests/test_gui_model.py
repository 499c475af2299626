"""Pure monitor logic (no Qt): ring buffers, accumulators, the stream model fed by the DAQ's own
monitor feed (through an in-process sink), batching, strips."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.gui.accumulators import RateTracker, class_key, total_losses
from agetdaq.gui.batching import Coalescer, SeqTracker
from agetdaq.gui.calib_state import CalibState
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.history import TimeSeries
from agetdaq.gui.model import LinkInfo, StreamModel
from agetdaq.gui.runstate import allowed_actions
from agetdaq.gui.strips import StripSpecError, format_strips, parse_strips
from agetdaq.gui.synthetic import (
    FakeDaq,
    pedestal_arrays,
    status_payload,
    summary_arrays,
    synthetic_hits,
    synthetic_rows,
)
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.calibration import TrendConfig
from agetdaq.readout.analysis.sink import Collect
from agetdaq.readout.transport.stream import Message, decode_message, encode_message

MAPPING = StripMapping.default()


def wire(topic: str, seq: int, header: dict, arrays: dict | None = None, source="d0") -> Message:
    """A message exactly as the subscriber decodes it from the wire."""
    frames = encode_message(topic, seq, header, arrays or {}, source)
    return decode_message([bytes(f) for f in frames])


# ---- TimeSeries ---------------------------------------------------------------------------------


def test_time_series_keeps_the_newest_rows_in_order():
    ts = TimeSeries(("a", "b"), capacity=5)
    for i in range(8):
        ts.append(float(i), {"a": i * 10.0, "b": None if i % 2 else 1.0})
    assert len(ts) == 5
    np.testing.assert_array_equal(ts.t, [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(ts.column("a"), [30, 40, 50, 60, 70])
    assert ts.last("a") == 70.0 and ts.last("b") == 1.0  # newest finite
    assert ts.value_at("a", 5.5) == 50.0 and ts.value_at("a", 1.0) is None


def test_time_series_window_and_thinning():
    ts = TimeSeries(("v",), capacity=1000)
    for i in range(600):
        ts.append(float(i), {"v": float(i)})
    t, cols = ts.window(500.0, ["v"])
    np.testing.assert_array_equal(t, np.arange(500, 600))
    t, cols = ts.window(0.0, ["v"], max_points=100)
    assert len(t) <= 100 and t[0] == 0.0
    np.testing.assert_array_equal(cols["v"], t)


def test_time_series_before_wrap_and_empty():
    ts = TimeSeries(("v",), capacity=4)
    assert ts.last("v") is None and ts.last_time() is None
    ts.append(1.0, {"v": 2.0})
    np.testing.assert_array_equal(ts.t, [1.0])
    with pytest.raises(ValueError):
        TimeSeries(("v",), capacity=0)


# ---- accumulators -------------------------------------------------------------------------------


def test_loss_totals_and_class_names():
    assert total_losses({"socket": {"drop": 3, "trunc": 1}, "builder": {"x": 2}, "n": "?"}) == 6
    assert [class_key(n) for n in ("xray", "X-ray-like", "muon", "Noise", "zzz")] == [
        "xray", "xray", "muon", "noise", None]  # fmt: skip


def test_rate_tracker_per_class_rates_and_losses():
    rt = RateTracker(100)
    rt.add_status(0.0, {"trigger_rate": 5.0, "class_counts": {"xray": 0, "muon": 0},
                        "losses": {"s": {"k": 2}}}, gaps_total=0)  # fmt: skip
    rt.add_status(2.0, {"trigger_rate": 6.0, "class_counts": {"xray": 10, "muon": 4},
                        "losses": {"s": {"k": 5}}, "dead_time": 0.1}, gaps_total=1)  # fmt: skip
    s = rt.series
    assert s.last("rate_xray") == pytest.approx(5.0) and s.last("rate_muon") == pytest.approx(2.0)
    assert s.last("loss_rate") == pytest.approx(1.5) and s.last("dead_time_pct") == pytest.approx(
        10
    )
    assert rt.increase_since("losses_total", 60.0) == pytest.approx(3.0)
    rt.add_status(3.0, {"losses": {"s": {"k": 1}}}, gaps_total=1)  # DAQ restarted its counters
    assert s.last("losses_total") == pytest.approx(6.0)


# ---- StreamModel --------------------------------------------------------------------------------


def test_model_shows_every_topic_as_the_daq_feed_makes_it():
    sink = Collect("d0")
    daq = FakeDaq(sink, MAPPING, seed=3)
    daq.status(run_number=7, events=10)
    daq.new_run(7)
    sent = daq.summary(500)
    daq.event(1.0, -2.0, event_id=3)
    daq.pedestal(dead=(5,), noisy=(130, 131))
    daq.calib(0, 0.95)
    m = StreamModel("tcp://x", MAPPING)
    for msg in sink.messages:
        m.apply(msg)
    xray = sent["class"] == 1
    e = sent["energy_adc"][xray]
    assert m.name == "d0" and m.run_number == 7 and m.state() == "running"
    assert m.hist.total == int(xray.sum())  # the DAQ's hitmap
    assert m.hist.spectrum.sum() == int(np.count_nonzero((e >= 0) & (e < 8192)))
    assert m.summary_events == 500 and m.class_totals[1] == int(xray.sum())
    assert m.class_totals.sum() == 500
    assert m.hist.occupancy.sum() > 0 and m.hist.occupancy_events == 500
    assert len(m.events) == 1 and m.events[0].hits.sum() > 0
    assert m.pedestal.count(1) == 1 and m.pedestal.count(2) == 2
    assert m.latest_gain() == (pytest.approx(0.95), pytest.approx(18.0), pytest.approx(1.2))
    parts = ("status", "summary", "event", "pedestal", "calib", "hist")
    assert all(m.version[p] > 0 for p in parts)


def test_model_occupancy_is_the_daqs_of_the_kept_events():
    sink = Collect("d0")
    daq = FakeDaq(sink, MAPPING, seed=9)
    sent = daq.summary(200)
    m = StreamModel("tcp://x", MAPPING)
    for msg in sink.messages:
        m.apply(msg)
    rows = synthetic_rows(np.random.default_rng(0), 200, 0.0)
    rows["x_mm"], rows["y_mm"] = sent["x_mm"], sent["y_mm"]
    np.testing.assert_array_equal(m.hist.occupancy, synthetic_hits(MAPPING, rows).sum(axis=0))
    m.hist.reset_display()  # the Reset button: only what comes next is shown
    assert m.hist.total == 0 and m.hist.shown_occupancy.sum() == 0
    daq.summary(50)
    m.apply(sink.topic("hist")[-1])
    assert 0 < m.hist.total <= 50 and m.hist.class_counts["xray"] > m.hist.total


def test_model_resets_run_data_on_a_new_run_and_ignores_bad_content():
    sink = Collect("d0")
    daq = FakeDaq(sink, MAPPING, seed=4)
    daq.summary(100)
    m = StreamModel("tcp://x", MAPPING)
    for msg in sink.messages:
        m.apply(msg)
    assert m.hist.total > 0
    sink.messages.clear()
    daq.new_run(2)
    sink.messages.clear()  # what the end of run 1 published
    daq.summary(10)
    for msg in sink.messages:
        m.apply(msg)
    assert m.run_number == 2 and 0 < m.hist.total <= 10 and m.summary_events == 10
    before = dict(m.version)
    m.apply(wire("event", 0, {}, {"waveforms": np.zeros((3, 4), np.float32)}))  # wrong shape
    m.apply(wire("pedestal", 0, {}, {"strip": np.zeros(3, np.int16)}))  # incomplete
    m.apply(wire("hist", 0, {"run_number": 2}, {"hitmap": np.zeros((3, 4), np.float32)}))
    m.apply(wire("calib", 0, {"run_number": 2, "kind": "live"}, {}))  # no spectrum
    m.apply(wire("nonsense", 0, {}))
    assert m.version["event"] == before["event"] and not m.pedestal.present
    assert m.version["hist"] == before["hist"] and m.version["calib"] == before["calib"]


def test_model_metrics_for_the_alarm_rules():
    m = StreamModel("tcp://x", MAPPING)
    m.set_link(LinkInfo("tcp://x", state="connected", last_rx=100.0))
    m.apply(wire("status", 0, status_payload(disk_free_gb=3.5, losses={"s": {"k": 0}})))
    m.apply(wire("pedestal", 0, {}, pedestal_arrays(MAPPING, noisy=(1,))))
    metrics = m.metrics(now=m.status_rx + 0.5)
    assert metrics["disk_free_gb"] == 3.5 and metrics["noisy_channels"] == 1.0
    assert metrics["board_alive"] == 1.0 and metrics["trigger_rate"] == 50.0
    assert metrics["data_age_s"] == pytest.approx(m.status_rx + 0.5 - 100.0)
    assert metrics["gain_rel"] is None  # no calibration yet
    stale = m.metrics(now=m.status_rx + 60.0)
    assert stale["disk_free_gb"] is None  # old status values are not trusted


def test_model_shows_the_daq_55fe_feed_trend_live_fit_and_map():
    """The DAQ's CalibFeed (a calibration run of synthetic rows) makes the trend, the live
    window's fit and the gain map; the model only keeps them."""
    sink = Collect("d0")
    daq = FakeDaq(sink, MAPPING, seed=5, run_type="calibration")
    calib = daq.feed.calib
    calib.config = TrendConfig(slice_xrays=10**6)
    calib.window_xrays = 3000
    calib.live_interval_s = calib.map_step_s = 0.0
    daq.new_run(1)
    for peak in (3000.0, 3000.0, 2700.0):
        for _ in range(3):
            daq.summary(1000, peak_adc=peak, xray_fraction=1.0)
        calib.close_slice()  # as the crew's "close the slice now" would
    for _ in range(calib.sweep.n_regions + 1):
        daq.feed.tick()  # the live fit, then the gain map one region per tick
    m = StreamModel("tcp://x", MAPPING)
    for msg in sink.messages:
        m.apply(msg)
    trend = m.calib.trend
    gain = trend.column("gain_rel")
    assert len(trend) == 3 and np.all(trend.column("ok") == 1)
    assert gain[0] == pytest.approx(1.0)
    assert gain[-1] == pytest.approx(0.9, abs=0.03)  # the peak moved by -10 %
    res = trend.column("resolution_pct")
    assert np.all((res > 10) & (res < 30))
    live = m.calib.live
    assert live is not None and live.ok and len(live.curve_x) > 1
    assert live.window_xrays == 3000 and 2950 < live.counts <= 3000  # in range of the 3000
    assert live.peak_adc == pytest.approx(2700, rel=0.03)
    assert live.gain_rel == pytest.approx(0.9, abs=0.03)
    # one gain number: the newest good fit of the DAQ, shown and watched by the alarms
    assert m.metrics()["gain_rel"] == pytest.approx(live.gain_rel, rel=1e-6)
    gm = m.calib.gain_map
    assert gm is not None and gm.rel_gain.shape == (6, 6) and gm.counts.sum() > 8000
    texts = [gm.cell_text(ix, iy) for ix in range(6) for iy in range(6)]
    assert any(t[0].isdigit() and "." in t for t in texts)  # fitted cells
    assert any("/" in t for t in texts)  # the sparse corners say why not: "120/200" X-rays
    assert "with too few X-rays (200 needed)" in gm.summary()


def test_the_one_gain_number_comes_from_one_source_and_does_not_jump_back():
    """The live window (the last N X-rays) and a trend point (a slice, or a part of one) lag a
    drift by different amounts: taking whichever ended later made the gain read 0.88, 0.95, ...
    while it fell, and the gain alarm fire and clear in turn (seen in CI). The run's newest good
    live fit is the number; a failed live fit does not replace it; a trend point is the number
    only while the run has no good live fit."""
    cs = CalibState(100)
    arrays = {"edges": np.arange(3.0), "spectrum": np.ones(2)}

    def live(t: float, rel: float | None) -> None:
        ok = rel is not None
        cs.apply({"kind": "live", "ok": ok, "t_end": t, "gain": 500.0 * (rel or 0), "counts": 600,
                  "gain_rel": rel if ok else None, "fwhm_rel": 0.2}, arrays)  # fmt: skip

    def point(t: float, rel: float) -> None:
        cs.apply({"kind": "point", "ok": True, "t_end": t, "gain": 500.0 * rel, "gain_rel": rel,
                  "fwhm_rel": 0.2}, arrays)  # fmt: skip

    point(5.0, 0.99)
    assert cs.gain_now()[0] == pytest.approx(0.99) and cs.gain_now()[3] == "trend point"
    seen = []
    for step in (lambda: live(10.0, 0.95), lambda: point(11.0, 0.88), lambda: live(12.0, None),
                 lambda: live(13.0, 0.90)):  # fmt: skip
        step()
        seen.append(cs.gain_now()[0])
    assert seen == pytest.approx([0.95, 0.95, 0.95, 0.90])
    assert cs.last_gain() == pytest.approx(450.0)
    cs.reset_run()  # a new run: its own live fits; until then the newest trend point
    assert cs.gain_now()[0] == pytest.approx(0.88)


# ---- worker bookkeeping -------------------------------------------------------------------------


def test_seq_tracker_counts_gaps_per_topic_and_restarts():
    link = LinkInfo("a")
    tr = SeqTracker()
    for seq in (0, 1, 4, 5):
        tr.observe(wire("status", seq, {}), link)
    tr.observe(wire("summary", 0, {}), link)
    tr.observe(wire("summary", 3, {}), link)
    tr.observe(wire("status", 0, {}), link)  # DAQ restarted
    assert link.gaps == 4 and link.gaps_by_topic == {"status": 2, "summary": 2}
    assert link.restarts == 1


def test_coalescer_merges_summaries_and_keeps_the_newest_event():
    rng = np.random.default_rng(6)
    c = Coalescer(max_summary_rows=250)
    c.add(wire("summary", 0, {"run_number": 1}, summary_arrays(rng, 100, 0.0)))
    c.add(wire("status", 0, {"state": "running"}))
    c.add(wire("summary", 1, {"run_number": 1}, summary_arrays(rng, 100, 1.0, first_id=100)))
    c.add(wire("event", 0, {"event_id": 1}, {"hits": np.zeros(3, bool)}))
    c.add(wire("event", 1, {"event_id": 2}, {"hits": np.zeros(3, bool)}))
    c.add(wire("summary", 2, {"run_number": 1}, summary_arrays(rng, 100, 2.0, first_id=200)))
    c.add(wire("summary", 0, {"run_number": 2}, summary_arrays(rng, 5, 3.0)))
    out = c.take()
    assert [m.topic for m in out] == ["summary", "status", "event", "summary"]
    merged = out[0]
    assert len(merged.arrays["event_id"]) == 250 and c.dropped_rows == 50
    np.testing.assert_array_equal(merged.arrays["event_id"], np.arange(50, 300))
    assert out[2].header["event_id"] == 2 and c.dropped_events == 1
    assert out[3].header["run_number"] == 2 and len(c) == 0


# ---- strips and run states ----------------------------------------------------------------------


def test_strip_names_parse_and_format():
    assert parse_strips("X3, X10 - X12 Y0,y2-4 239", MAPPING) == [3, 10, 11, 12, 120, 122, 123,
                                                                  124, 239]  # fmt: skip
    assert format_strips([3, 10, 11, 12, 119, 120, 239], MAPPING) == "X3, X10-X12, X119, Y0, Y119"
    for bad in ("Z3", "X120", "X5-X2", "X1-Y3", "240"):
        with pytest.raises(StripSpecError):
            parse_strips(bad, MAPPING)


def test_allowed_actions_follow_the_state_machine():
    assert allowed_actions("idle") >= {"configure", "start"}
    assert allowed_actions("configured") >= {"configure", "start"}
    assert allowed_actions("running") == {"stop", "reference"}
    assert allowed_actions("configuring") == allowed_actions("stopping") == frozenset()
    assert allowed_actions("idle", reachable=False) == frozenset()
    assert allowed_actions("idle", busy=True) == frozenset()
    assert allowed_actions(None) == allowed_actions("bogus") == frozenset()


def test_monitor_config_from_toml(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text("[monitor]\nredraw_hz = 5\nslice_xrays = 500\n")
    cfg = MonitorConfig.load(p)
    assert cfg.redraw_hz == 5.0 and cfg.slice_xrays == 500 and cfg.gainmap_n == 6
    p.write_text("[monitor]\nredraw = 5\n")
    with pytest.raises(ValueError, match="unknown key"):
        MonitorConfig.load(p)
    p.write_text("[monitor]\nslice_xrays = 'many'\n")
    with pytest.raises(ValueError, match="slice_xrays"):
        MonitorConfig.load(p)


def test_end_of_run_keeps_the_file_the_stopping_status_no_longer_names():
    from agetdaq.gui.runs import RunWatch

    watch = RunWatch()
    running = {"state": "running", "run_number": 3, "run_type": "calibration",
               "file": "/data/R00003_calibration.h5", "events": 10,
               "start_time": 100.0}  # fmt: skip
    stopping = {**running, "state": "stopping", "file": ""}
    last = {"run_number": 3, "stop_reason": "600 s reached", "events": 12}
    done = {"state": "configured", "run_number": 3, "file": "", "events": 12, "last_run": last}
    assert not watch.on_status({}, running, 101.0, {}, None)
    assert not watch.on_status(running, stopping, 102.0, {}, None)
    assert watch.on_status(stopping, done, 103.0, {}, None)
    assert watch.ended["file"] == "/data/R00003_calibration.h5"
    assert watch.ended["stop_reason"] == "600 s reached" and watch.ended["events"] == 12
