"""The data path's Stage contract and its seam.

A new stage touches one module and one settings line: here the stage class lives in this test
file and joins a real acquisition through ``[pipeline] stages`` (as ``"module:Class"``), without
an edit to any existing stage. A built-in stage would be one module in readout/datapath/stages/,
one line in readout/datapath/registry.py (STAGES) and its name in the settings' stage list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from agetdaq.protocol.decode import pack_datagrams
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.config import ConfigError
from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.chain import Pipeline
from agetdaq.readout.datapath.path import DataPath
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.trigger import XRAY
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.datapath.registry import DEFAULT_STAGES
from agetdaq.readout.datapath.stage import PathContext, PipelineError, RunState, Stage
from agetdaq.readout.datapath.stages.sequence import SequenceTracker
from agetdaq.readout.link.receiver import Batch as RingBatch
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter, WriterConfig

HERE = __name__  # "module" of the "module:Class" entries below


# ---- a stage of our own --------------------------------------------------------------------


@dataclass(frozen=True)
class XrayOptions:
    min_energy_adc: float = 0.0


class XrayPerStrip(Stage):
    """Counts, per strip, the X-ray-like events that hit it (one numpy sum per batch); leaves
    the counts in ``run.outputs`` and the batch's own counts in ``batch.extra``."""

    name = "xray_per_strip"
    needs = ("processed",)
    Options = XrayOptions

    def __init__(self, context: PathContext, options: XrayOptions | None = None) -> None:
        super().__init__(context, options)
        self.n_strips = context.layout.n_strips
        self.counts = np.zeros(self.n_strips, np.int64)
        self.events = 0
        self.unseen = 0  # shed events: no hits to count

    def begin_run(self, run: RunState) -> None:
        self.counts = np.zeros(self.n_strips, np.int64)
        self.events = self.unseen = 0

    def process(self, batch: Batch) -> None:
        proc = batch.processed
        if proc is None:
            self.unseen += len(batch)
        else:
            f = proc.features
            xray = (f["cls"] == XRAY) & (f["energy"] >= self.options.min_energy_adc)
            here = proc.hit[xray].sum(axis=0)
            self.counts += here
            self.events += int(np.count_nonzero(xray))
            batch.extra[self.name] = here
        self.emit(batch)

    def end_run(self) -> None:
        self.run.outputs[self.name] = self.counts.copy()

    def counters(self) -> dict[str, int]:
        return {"events": self.events, "unseen": self.unseen}


class Probe(Stage):
    """Records what each batch looked like when it came by."""

    name = "probe"
    needs = ("built",)
    seen: ClassVar[list[tuple[bool, int, int]]] = []  # (raw there, ring taken, released)

    def process(self, batch: Batch) -> None:
        ring = self.context.ring
        Probe.seen.append((batch.raw is not None, ring.taken, ring.pos))
        self.emit(batch)


class Sink(Stage):
    """Keeps nothing and passes nothing on (it reads the ring views, so it comes first)."""

    name = "sink"
    needs = ("raw",)

    def process(self, batch: Batch) -> None:
        pass


# ---- the seam, on real data ----------------------------------------------------------------


def _scenario() -> Scenario:
    data = Scenario.load("default").as_dict()
    data.pop("path", None)
    data["source"] = {"fe55": data.pop("fe55"), "muon": data.pop("muon")}
    data["source"]["fe55"].update(rate_hz=200.0, area="full")
    data["source"]["muon"]["rate_hz"] = 20.0
    return Scenario.from_dict(data, "test")


@pytest.mark.network
def test_a_stage_added_through_the_settings_counts_xrays_per_strip(tmp_path):
    """The new stage runs in the real acquisition (emulator over 127.0.0.1) and sees exactly
    what the record stage wrote: per strip, the X-ray-like events stored with that strip hit."""
    emu = Emulator(_scenario(), port=0, seed=11).start()
    entry = f"{HERE}:XrayPerStrip"
    toml = f"""
[daq]
bec = "127.0.0.1:{emu.address[1]}"
data_dir = "{tmp_path}"
store_waveforms = "hits"
shed_fill = 1.0
[pipeline]
stages = {[*DEFAULT_STAGES, entry]}
[pipeline.options."{entry}"]
min_energy_adc = 0.0
""".replace("'", '"')
    acq = Acquisition(Settings.from_text(toml))
    try:
        acq.configure("run")
        acq.start_run("background", "seam", tmp_path / "run.h5", events=800, seconds=40)
        end = time.monotonic() + 60
        while acq.state == "running" and time.monotonic() < end:
            time.sleep(0.05)
            acq.poll()
        assert acq.state == "configured", acq.message
        counts = acq.datapath.outputs["xray_per_strip"]
        counters = acq.counters()["stages"]["xray_per_strip"]
    finally:
        acq.close()
        emu.stop()
    with RunFile(tmp_path / "run.h5") as f:
        ev = f.events()
        ch = f.channels()
    xray_rows = np.flatnonzero(ev["cls"] == XRAY)
    assert len(ev) >= 800 and len(xray_rows) > 200
    assert counters == {"events": len(xray_rows), "unseen": 0}
    stored = ch[np.isin(ch["event_row"], xray_rows) & (ch["strip"] >= 0)]
    want = np.bincount(stored["strip"], minlength=len(counts))
    assert counts.sum() > 4 * len(xray_rows)  # clusters of >= 2 strips on each axis
    assert np.array_equal(counts, want)


# ---- the contract, on a small batch ----------------------------------------------------------


class _Ring:
    """Hands out prepared datagrams as the link's ring would; never fills up."""

    n_slots = 1024

    def __init__(self, datagrams: list[bytes]) -> None:
        self.buf, self.lengths = pack_datagrams(datagrams, 9216)
        self.lengths = self.lengths.astype(np.int32)
        self.pos = 0  # released
        self.taken = 0

    def get_batch(self, max_n: int = 256, timeout: float | None = 0.1) -> RingBatch:
        a, z = self.pos, min(len(self.lengths), self.pos + max_n)
        self.taken = z
        return RingBatch(self.buf[a:z], self.lengths[a:z], np.arange(a, z, dtype=np.int64))

    def release(self, n: int) -> None:
        self.pos += n

    def fill(self) -> int:
        return 0


def _datagrams(n: int = 40) -> list[bytes]:
    rng = np.random.default_rng(4)
    events = []
    for i in range(n):
        bins = np.arange(40, dtype=np.uint16)
        adc = rng.integers(200, 900, (6, 40)).astype(np.uint16)
        chans = [Channel(0, k % 4, 3 + k, bins, adc[k]) for k in range(6)]
        events.append(Event(timestamp=100 * i + 1, event_count=i, channels=chans))
    return encode_events(events, eof_on_eoe=False, max_frame_bytes=600)


def _run(tmp_path, stages, batch: int = 16, **options) -> tuple[DataPath, _Ring]:
    ring = _Ring(_datagrams())
    layout = StripLayout.from_mapping(StripMapping.default(), 0)
    dp = DataPath(ring, Processor(layout), batch=batch, stages=stages, options=options)
    writer = RunWriter(tmp_path / "run.h5", EVENT_DTYPE, {}, WriterConfig(swmr=False))
    dp.begin_run(writer, 1)
    dp.end_run()
    writer.close({})
    return dp, ring


def test_every_stage_counts_and_the_totals_add_up(tmp_path):
    dp, ring = _run(tmp_path, DEFAULT_STAGES, shed={"chunk_events": 8, "sparse_chunk_events": 8})
    c = dp.counters
    per_stage = dp.stage_counters()
    assert list(per_stage) == list(DEFAULT_STAGES)
    assert c.events == c.events_processed == 40 and c.events_shed == 0
    assert c.datagrams == len(ring.lengths) == ring.pos
    assert per_stage["build"]["events_out"] == 40 and per_stage["shed"]["chunks"] >= 5
    assert per_stage["record"]["events_written"] == 40
    assert per_stage["record_raw"]["datagrams_written"] == c.datagrams
    layout = StripLayout.default()
    stray = sum(
        layout.lut[0, k % 4, 3 + k] < 0 and layout.fpn_lut[0, k % 4, 3 + k] < 0 for k in range(6)
    )
    assert per_stage["process"]["ignored_rows"] == 40 * stray  # neither a strip nor an FPN channel
    assert per_stage["sequence"]["missing"] == 0 and per_stage["decode"] == {}
    with RunFile(tmp_path / "run.h5") as f:
        assert f.n_events == 40 and f.n_datagrams == c.datagrams


def test_the_ring_goes_back_before_the_processing(tmp_path):
    Probe.seen = []
    stages = ["sequence", "decode", "build", f"{HERE}:Probe", "process", "rows", "record"]
    dp, _ = _run(tmp_path, stages, batch=4)
    assert Probe.seen and "probe" in dp.stage_counters()
    assert all(not raw and released == taken for raw, taken, released in Probe.seen)


def test_a_stage_that_passes_nothing_on_loses_no_ring_slot(tmp_path):
    dp, ring = _run(tmp_path, [f"{HERE}:Sink", "decode", "build"])
    assert ring.pos == len(ring.lengths) and dp.counters.events == 0


def test_a_bad_pipeline_is_refused_with_the_stage_named(tmp_path):
    layout = StripLayout.default()
    ctx = PathContext(layout, processor=Processor(layout))
    cases = [
        (["decode", "record"], "stage 'record' needs"),
        (["decode", "build", "sequence"], "stage 'sequence' reads the ring views"),
        (["decode", "nope"], "unknown stage 'nope'"),
        (["decode", f"{HERE}:Missing"], "cannot load"),
        (["decode", "decode"], "listed twice"),
    ]
    for names, message in cases:
        with pytest.raises(PipelineError, match=message):
            Pipeline.from_settings(names, ctx)
    with pytest.raises(PipelineError, match="stage 'shed': fil: unknown key"):
        Pipeline.from_settings(["decode", "build", "shed"], ctx, {"shed": {"fil": 0.5}})
    with pytest.raises(PipelineError, match="stage 'record': store must be one of"):
        Pipeline.from_settings(
            ["decode", "build", "rows", "record"], ctx, {"record": {"store": "x"}}
        )
    bad = '[pipeline]\nstages = ["decode", "publish"]\n'
    with pytest.raises(ConfigError, match=r"daq.toml: pipeline: stage 'publish' needs \['rows'\]"):
        Settings.from_text(bad, "daq.toml")


@pytest.mark.parametrize(
    ("leads", "want"),
    [
        ([0x105, 6, 7, 8], {"resyncs": 1}),
        ([0x100, 2, 1, 3], {"resyncs": 1, "late": 1}),
        ([0x100, 1, 3, 4], {"resyncs": 1, "missing": 1}),
        ([0x100, 1, 1, 2], {"resyncs": 1, "duplicates": 1}),
        # the first datagram of a run sent after the one that follows it: late, nothing missing
        ([6, 0x105, 7, 8], {"resyncs": 1, "late": 1}),
        ([6, 7, 0x105, 8], {"resyncs": 1, "late": 1}),
        # a board that restarts its sequence mid-run is a restart, whatever its number
        ([0x100, *range(1, 40), 0x100, 1, 2], {"resyncs": 2}),
        ([0x100, 1, 2, 0x100, 1, 2], {"resyncs": 2}),
    ],
)
def test_the_sequence_tracker_tells_late_from_lost(leads, want):
    for split in (1, len(leads)):  # datagram by datagram, and as one ring batch
        t = SequenceTracker()
        for a in range(0, len(leads), split):
            t.feed(np.array(leads[a : a + split]))
        got = {k: v for k, v in vars(t.counters).items() if v}
        assert got == want, (split, leads)
