"""The DAQ's monitor feed as the GUI gets it (no Qt): run histograms binned on the strips of the
mapping, the summary rows, sampled events, the in-process sink (the same messages as the wire),
and the live 55Fe window and gain-map sweep of the calibration feed."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from agetdaq.gui.synthetic import FakeDaq, fe55_energies, synthetic_rows
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout import schema as S
from agetdaq.readout.analysis.calibration import FitConfig, GainMapConfig
from agetdaq.readout.analysis.livecalib import LiveWindow, MapSweep
from agetdaq.readout.analysis.monitor import (
    MonitorFeed,
    RunHistograms,
    StripGeometry,
    strip_edges,
    summary_arrays,
)
from agetdaq.readout.analysis.sink import Collect, LocalSink
from agetdaq.readout.schema import NOT_PROCESSED
from agetdaq.readout.transport.stream import Publisher, Subscriber

MAPPING = StripMapping.default()


def small_mapping(n_x: int, n_y: int) -> StripMapping:
    """The default mapping's first ``n_x`` X and ``n_y`` Y strips."""
    lines = MAPPING.to_text().splitlines()
    keep = [ln for ln in lines[1:] if int(ln.split(",")[4]) < (n_x if ",X," in ln else n_y)]
    return StripMapping.from_text("\n".join([lines[0], *keep]), "small")


def xray_rows(x: list[float], y: list[float]) -> np.ndarray:
    rows = synthetic_rows(np.random.default_rng(0), len(x), 0.0, xray_fraction=1.0)
    rows["x_mm"], rows["y_mm"] = x, y
    return rows


def test_strip_edges_and_hitmap_fill():
    edges = strip_edges(MAPPING.x_positions_mm)
    assert len(edges) == 121 and edges[0] == pytest.approx(-30.0) and edges[-1] == pytest.approx(30)
    h = RunHistograms(StripGeometry.from_mapping(MAPPING))
    h.add(xray_rows([-29.9, 0.1, 0.1, 29.9, np.nan, 40.0], [0.0, 0.1, 0.1, 29.9, 1, 1]), None)
    assert h.hitmap.shape == (120, 120) and h.hitmap.dtype == np.float32
    assert h.hitmap.sum() == 4 and h.outside == 2 and h.class_counts[1] == 6
    assert h.hitmap[60, 60] == 2 and h.hitmap[0, 60] == 1 and h.hitmap[119, 119] == 1


def test_hitmap_and_occupancy_sizes_come_from_the_strip_mapping():
    small = small_mapping(40, 30)
    assert (small.n_x, small.n_y) == (40, 30)
    sink = Collect("d")
    feed = MonitorFeed(sink, mapping=small)
    feed.begin_run(3)
    rows = xray_rows([-29.9, -10.1, 0.0], [-29.9, -15.1, 0.0])  # 0.0 is off these strips
    hit = np.zeros((3, small.n_strips), bool)
    hit[0, [0, 1, 40]] = True
    feed.on_batch(rows, hit, None)
    feed.flush()
    (h,) = sink.topic("hist")
    assert h.arrays["hitmap"].shape == (40, 30) and h.arrays["occupancy"].shape == (70,)
    np.testing.assert_allclose(h.arrays["x_edges_mm"], strip_edges(small.x_positions_mm))
    assert h.arrays["hitmap"].sum() == 2 and h.header["outside"] == 1
    assert list(np.flatnonzero(h.arrays["occupancy"])) == [0, 1, 40]


def test_feed_accounts_unprocessed_events_as_such():
    sink = Collect("d")
    feed = MonitorFeed(sink)
    feed.begin_run(4)
    rows = synthetic_rows(np.random.default_rng(1), 100, 0.0)
    rows["build_flags"][:30] |= NOT_PROCESSED
    rows["trig"][30:40] = False
    hit = np.ones((100, MAPPING.n_strips), bool)
    feed.on_batch(rows, hit, None)
    feed.flush()
    (summary,) = sink.topic("summary")
    np.testing.assert_array_equal(summary.arrays["event_id"], rows["event_id"][30:])
    assert summary.header["n"] == 70
    np.testing.assert_array_equal(summary_arrays(rows)["class"], summary.arrays["class"])
    h = sink.topic("hist")[-1].header
    assert h["events"] == 100 and h["not_processed"] == 30
    assert sum(h["class_counts"].values()) == 70
    assert h["occupancy_events"] == 60  # processed and kept by the software trigger
    assert feed.sampled_row(rows) == 99
    rows["trig"][:] = False
    assert feed.sampled_row(rows) == 99 and feed.sampled_row(rows[:30]) is None


def test_local_sink_delivers_what_a_subscriber_receives():
    """The same feed calls on a Publisher (ZeroMQ, 127.0.0.1) and on a LocalSink give equal
    messages: topic, numbering, JSON header and arrays."""
    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", source="line", context=ctx)
    sub = Subscriber(pub.address, context=ctx)
    local = Collect("line", clock=lambda: 123.0)
    try:
        for _ in range(100):  # slow joiner: wait until the subscription is in place
            pub.publish("status", {"state": "idle"})
            if sub.recv(20) is not None:
                break
        while sub.recv(50) is not None:
            pass
        wire: list = []
        for sink in (pub, local):
            daq = FakeDaq(sink, MAPPING, seed=2, clock=lambda: 1000.0)
            daq.summary(300)
            daq.event(2.0, 3.0, event_id=5)
            daq.calib(0, 0.97, t=1000.0)
        for _ in range(200):
            msg = sub.recv(50)
            if msg is not None and msg.topic != "status":
                wire.append(msg)
            if len(wire) == len(local.messages):
                break
    finally:
        sub.close()
        pub.close()
        ctx.term()
    assert [m.topic for m in wire] == [m.topic for m in local.messages]
    assert {m.topic for m in wire} >= {"summary", "hist", "event", "calib"}
    for a, b in zip(wire, local.messages):
        ha = {k: v for k, v in a.header.items() if k not in ("time", "seq")}
        hb = {k: v for k, v in b.header.items() if k not in ("time", "seq")}
        assert ha == hb and a.arrays.keys() == b.arrays.keys()
        for k in a.arrays:
            np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    assert all(m.header["time"] == 123.0 for m in local.messages)
    assert [m.seq for m in local.topic("hist")] == list(range(len(local.topic("hist"))))


def test_local_sink_copies_what_the_feed_changes_later():
    got: list = []
    feed = MonitorFeed(LocalSink(got.append, "d"))
    feed.begin_run(1)
    feed.on_batch(xray_rows([0.1], [0.1]), None, None)
    feed.publish_hist()
    feed.on_batch(xray_rows([0.1], [0.1]), None, None)
    feed.publish_hist()
    hists = [m for m in got if m.topic == "hist"]
    assert [m.arrays["hitmap"].sum() for m in hists] == [1, 2]


def test_live_window_keeps_the_last_xrays_and_fits_them():
    rng = np.random.default_rng(3)
    w = LiveWindow(2000, 2048, 8192.0)
    w.add(fe55_energies(rng, 3000, peak_adc=3000.0), np.arange(3000.0))
    w.add(fe55_energies(rng, 2000, peak_adc=2400.0), 3000.0 + np.arange(2000.0))
    assert w.count == 2000 and w.added == 5000 and w.changed
    assert w.time_range() == (3000.0, 4999.0)  # only the newest 2000
    spectrum, fit = w.fit(FitConfig())
    assert not w.changed and spectrum.total + spectrum.overflow == 2000
    assert fit.ok and fit.peak_adc == pytest.approx(2400.0, rel=0.02)  # the old peak is gone


def test_map_sweep_fits_one_region_per_step_and_says_why_not():
    rng = np.random.default_rng(4)
    sweep = MapSweep(GainMapConfig(nx=2, ny=2, select=False), min_xrays=500)
    n = 3000
    x = rng.uniform(-30, 30, n)
    y = rng.uniform(0.5, 30, n)  # the lower half (iy 0) gets nothing
    sweep.fill(fe55_energies(rng, n), x, y)
    first, second, third = sweep.step(), sweep.step(), sweep.step()
    assert first is not None and second is not None  # a map after every step of a sweep
    assert third is None  # nothing new: no sweep
    before = {(r.ix, r.iy): r for r in first.regions}
    assert before[0, 1].ok and before[1, 1].fit.reason.endswith("X-rays, fit due")  # one fit
    regions = {(r.ix, r.iy): r for r in second.regions}
    assert regions[0, 1].ok and regions[1, 1].ok
    assert regions[0, 0].fit.reason == "0 of 500 X-rays" and not regions[1, 0].ok
    assert regions[0, 1].rel_gain == pytest.approx(1.0, abs=0.03)


def test_calib_live_and_map_messages_carry_the_schema_fields():
    sink = Collect("d")
    daq = FakeDaq(sink, MAPPING, seed=8, run_type="calibration")
    calib = daq.feed.calib
    calib.live_interval_s = calib.map_step_s = 0.0
    daq.new_run(2)
    for _ in range(3):
        daq.summary(1000, xray_fraction=1.0)
    for _ in range(calib.sweep.n_regions + 1):
        daq.feed.tick()
    daq.feed.end_run()
    kinds: dict[str, object] = {}
    for m in sink.topic("calib"):
        kinds.setdefault(m.header["kind"], m)
    assert set(kinds) == set(S.CALIB_KINDS)
    envelope = set(S.ENVELOPE_FIELDS)
    for kind, header, arrays in (("point", S.CALIB_HEADER, S.CALIB_ARRAYS),
                                 ("live", S.CALIB_LIVE_HEADER, S.CALIB_LIVE_ARRAYS),
                                 ("map", S.CALIB_MAP_HEADER, S.CALIB_MAP_ARRAYS)):  # fmt: skip
        msg = kinds[kind]
        assert set(msg.header) - envelope == set(header), kind
        assert set(msg.arrays) == set(arrays), kind
    hist = sink.topic("hist")[-1]
    assert set(hist.header) - envelope == set(S.HIST_HEADER)
    assert set(hist.arrays) == set(S.HIST_ARRAYS)
