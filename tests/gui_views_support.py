"""What the view tests share (tests/test_gui_views*.py): synthetic messages as they travel, a
window of the monitor fed by hand, the DAQ's feeds on synthetic data and a tiny real control
server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.model import LinkInfo, StreamModel
from agetdaq.gui.synthetic import FakeDaq, status_payload, synthetic_hits, synthetic_rows
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import SourceWorker
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.sink import Collect
from agetdaq.readout.transport.control import ControlServer
from agetdaq.readout.transport.stream import Message, decode_message, encode_message

MAPPING = StripMapping.default()


def wire(topic: str, seq: int, header: dict, arrays: dict | None = None, source="d0") -> Message:
    frames = encode_message(topic, seq, header, arrays or {}, source)
    return decode_message([bytes(f) for f in frames])


def make_window(qtbot, tmp_path, n_sources=1, controls=None, rules=None) -> MainWindow:
    sources = [(SourceWorker(f"test://{i}"), (controls or {}).get(i)) for i in range(n_sources)]
    w = MainWindow(sources, MAPPING, MonitorConfig(), rules if rules is not None else load_rules(),
                   snapshot_dir=tmp_path)  # fmt: skip
    qtbot.addWidget(w)
    w.show()
    return w


def shared_window(tmp_path_factory) -> Iterator[MainWindow]:
    """One window for the tests of a module that only feed data (a window costs ~1 s)."""
    w = MainWindow([(SourceWorker("test://0"), None)], MAPPING, MonitorConfig(), load_rules(),
                   snapshot_dir=tmp_path_factory.mktemp("snapshots"))  # fmt: skip
    w.show()
    yield w
    w.close()


def fresh(shared: MainWindow) -> MainWindow:
    """The shared window with a fresh model (nothing left from the previous test)."""
    for s in shared.sources:
        s.model = StreamModel(s.worker.address, MAPPING, shared.config, load_rules())
    for v in [shared.banner, *shared.views]:
        v.model_changed()
    shared.tabs.setCurrentIndex(0)
    return shared


def show(w: MainWindow, cls) -> object:
    view = w.view(cls)
    w.tabs.setCurrentWidget(view.widget)
    w.redraw()
    return view


def feed_run(w: MainWindow, slot: int = 0, n: int = 400, seed: int = 1, source="d0") -> dict:
    """Status x2 and what the DAQ's feed makes of ``n`` synthetic events (a summary and the run's
    hist), two sampled events, a pedestal table and a calib point; returns the summary."""
    sink = Collect(source, clock=lambda: 1000.0)
    daq = FakeDaq(sink, MAPPING, seed=seed, clock=lambda: 1000.0, run_number=7)
    arrays = daq.summary(n)
    daq.event(1.0, -2.0, event_id=11)
    daq.event(-10.0, 5.0, event_id=12)
    daq.pedestal(dead=(5,), noisy=(130,))
    daq.calib(0, 0.97, t=1000.0)
    st = status_payload(run_number=7, events=n, class_counts={"xray": 0, "muon": 0})
    st2 = status_payload(run_number=7, events=2 * n, class_counts={"xray": 30, "muon": 3})
    msgs = [wire("status", 0, {**st, "time": 1000.0}, source=source), *sink.messages]
    w._on_link(slot, LinkInfo(f"test://{slot}", state="connected"))
    w._on_batch(slot, msgs)
    # status carries the time of its header; a second one 2 s later gives rates
    second = wire("status", 1, st2, source=source)
    second.header["time"] = msgs[0].header["time"] + 2.0
    w._on_batch(slot, [second])
    return arrays


def expected_occupancy(arrays: dict) -> np.ndarray:
    """The strips FakeDaq's events hit (every event is kept by the trigger)."""
    rows = synthetic_rows(np.random.default_rng(0), len(arrays["x_mm"]), 0.0)
    rows["x_mm"], rows["y_mm"] = arrays["x_mm"], arrays["y_mm"]
    return synthetic_hits(MAPPING, rows).sum(axis=0)


def feed_calibration(w: MainWindow, seed: int = 6) -> FakeDaq:
    """A calibration run through the DAQ's feed: 4000 X-rays at 3000 ADC, two trend points,
    the live window's fit and the gain map, into the window's model."""
    sink = Collect("d0", clock=lambda: 1000.0)
    daq = FakeDaq(sink, MAPPING, seed=seed, run_type="calibration", clock=lambda: 1000.0,
                  run_number=7)  # fmt: skip
    calib = daq.feed.calib
    calib.config = replace(calib.config, slice_xrays=2000)
    calib.live_interval_s = calib.map_step_s = 0.0
    daq.new_run(7)
    sink.messages.clear()
    for _ in range(4):
        daq.summary(1000, xray_fraction=1.0)
    for _ in range(calib.sweep.n_regions + 1):
        daq.feed.tick()
    w._on_link(0, LinkInfo("test://0", state="connected"))
    w._on_batch(0, list(sink.messages))
    return daq


def start_control_server(requests: list[dict]):
    """A real ControlServer on 127.0.0.1 with a tiny state machine, polled by a thread."""
    state = {"state": "idle"}
    moves = {"configure": "configured", "start": "running", "stop": "idle"}

    def handler(req: dict) -> dict:
        requests.append(req)
        cmd = req["cmd"]
        if cmd in moves:
            state["state"] = moves[cmd]
        return {"ok": True, "state": state["state"]}

    server = ControlServer("tcp://127.0.0.1:*", handler)
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            server.poll(50)
        server.close()

    th = threading.Thread(target=loop, daemon=True)
    th.start()

    def stop() -> None:
        done.set()
        th.join(5)

    return server, stop
