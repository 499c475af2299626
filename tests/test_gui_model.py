"""Pure monitor logic (no Qt): ring buffers, accumulators, the stream model, batching, strips."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.gui.accumulators import Hitmap, RateTracker, class_key, strip_edges, total_losses
from agetdaq.gui.batching import Coalescer, SeqTracker
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.history import TimeSeries
from agetdaq.gui.model import LinkInfo, StreamModel
from agetdaq.gui.runstate import allowed_actions
from agetdaq.gui.strips import StripSpecError, format_strips, parse_strips
from agetdaq.gui.synthetic import event_arrays, pedestal_arrays, status_payload, summary_arrays
from agetdaq.protocol.mapping import StripMapping
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


def test_strip_edges_and_hitmap_fill():
    edges = strip_edges(MAPPING.x_positions_mm)
    assert len(edges) == 121 and edges[0] == pytest.approx(-30.0) and edges[-1] == pytest.approx(30)
    hm = Hitmap.for_mapping(MAPPING)
    hm.fill(np.array([-29.9, 0.1, 0.1, 29.9, np.nan, 40.0]), np.array([0.0, 0.1, 0.1, 29.9, 1, 1]))
    assert hm.counts.shape == (120, 120) and hm.counts.dtype == np.float32
    assert hm.total == 4 and hm.outside == 2
    assert hm.counts[60, 60] == 2 and hm.counts[0, 60] == 1 and hm.counts[119, 119] == 1


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


def test_model_accumulates_every_topic():
    rng = np.random.default_rng(3)
    m = StreamModel("tcp://x", MAPPING)
    m.apply(wire("status", 0, status_payload(run_number=7, events=10)))
    arrays = summary_arrays(rng, 500, 1000.0)
    m.apply(wire("summary", 0, {"run_number": 7, "n": 500}, arrays))
    m.apply(wire("event", 0, {"run_number": 7, "event_id": 3}, event_arrays(MAPPING, 1.0, -2.0)))
    m.apply(wire("pedestal", 0, {"run_number": 7, "k_sigma": 5.0},
                 pedestal_arrays(MAPPING, dead=(5,), noisy=(130, 131))))  # fmt: skip
    calib = {"t_end": 1000.0, "ok": True, "gain_rel": 0.95, "fwhm_rel": 0.2,
             "threshold_kev": 1.1, "peak_adc": 2850.0, "counts": 100}  # fmt: skip
    m.apply(wire("calib", 0, calib))
    xray = arrays["class"] == 1
    assert m.name == "d0" and m.run_number == 7 and m.state() == "running"
    assert m.hitmap.total == int(xray.sum())
    assert m.gain.spectrum.total == int(xray.sum())
    assert m.summary_events == 500 and m.class_totals[1] == int(xray.sum())
    assert len(m.events) == 1 and m.occupancy.counts.sum() == m.events[0].hits.sum() > 0
    assert m.pedestal.count(1) == 1 and m.pedestal.count(2) == 2
    assert m.latest_gain() == (pytest.approx(0.95), pytest.approx(20.0), pytest.approx(1.1))
    assert all(m.version[p] > 0 for p in ("status", "summary", "event", "pedestal", "calib"))


def test_model_resets_run_data_on_a_new_run_and_ignores_bad_content():
    rng = np.random.default_rng(4)
    m = StreamModel("tcp://x", MAPPING)
    m.apply(wire("summary", 0, {"run_number": 1}, summary_arrays(rng, 100, 0.0)))
    assert m.hitmap.total > 0
    m.apply(wire("summary", 1, {"run_number": 2}, summary_arrays(rng, 10, 1.0)))
    assert 0 < m.hitmap.total <= 10
    before = dict(m.version)
    m.apply(wire("event", 0, {}, {"waveforms": np.zeros((3, 4), np.float32)}))  # wrong shape
    m.apply(wire("pedestal", 0, {}, {"strip": np.zeros(3, np.int16)}))  # incomplete
    m.apply(wire("nonsense", 0, {}))
    assert m.version["event"] == before["event"] and not m.pedestal.present


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


def test_model_gain_monitor_fits_slices_into_a_trend():
    cfg = MonitorConfig(slice_xrays=3000, live_fit_s=0.0)
    m = StreamModel("tcp://x", MAPPING, cfg)
    rng = np.random.default_rng(5)
    for k, peak in enumerate((3000.0, 3000.0, 2700.0)):
        arrays = summary_arrays(rng, 3000, 100.0 * k, peak_adc=peak, xray_fraction=1.0)
        arrays["time_s"] = 100.0 * k + np.linspace(0, 50, 3000)
        m.apply(wire("summary", k, {"run_number": 1}, arrays))
        task = m.gain.next_task(now=float(k))
        assert task is not None and m.gain.next_task(now=float(k)) is None  # one at a time
        m.gain.accept(task())
    gain = m.gain.trend.column("gain_rel")
    assert len(m.gain.trend) == 3 and np.all(m.gain.trend.column("ok") == 1)
    assert gain[0] == pytest.approx(1.0)
    assert gain[-1] == pytest.approx(0.9, abs=0.03)  # the peak moved by -10 %
    assert m.gain.live is not None and m.gain.live.ok and len(m.gain.live.curve_x) > 1
    res = m.gain.trend.column("resolution_pct")
    assert np.all((res > 10) & (res < 30))
    assert m.metrics()["gain_rel"] == pytest.approx(gain[-1], rel=1e-5)


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
