"""The processing chain on synthetic detector data: pedestals, common mode, hits, centroids,
classification, trigger, running baselines, zero suppression; Processor against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.protocol.event import Channel, Event
from agetdaq.readout.datapath.processing import (
    MUON,
    NOISE,
    XRAY,
    PedestalAccumulator,
    PedestalTable,
    Processor,
    ProcessorConfig,
    StripLayout,
    TriggerConfig,
)
from agetdaq.readout.datapath.processing.reference import process_ref
from agetdaq.readout.datapath.processing.synthetic import SyntheticDetector
from agetdaq.readout.datapath.processing.waveforms import flatten_events


@pytest.fixture(scope="module")
def layout() -> StripLayout:
    return StripLayout.default()


@pytest.fixture(scope="module")
def det(layout: StripLayout) -> SyntheticDetector:
    d = SyntheticDetector(layout, seed=7)
    d.noise[17] = 0.3  # a dead strip
    d.noise[200] = 20.0  # a noisy strip
    return d


@pytest.fixture(scope="module")
def pedestal_run(det: SyntheticDetector) -> tuple[PedestalTable, np.ndarray]:
    """The table of a 200-event pedestal run and the injected common mode's mean per chip."""
    acc = PedestalAccumulator(det.layout.chip, cm_method="median")
    cm_sum = np.zeros(4)
    for _ in range(2):
        strips, fpn, cm = det.baseline(100)
        acc.add(strips, fpn=fpn)
        cm_sum += cm.sum(axis=(0, 2))
    return acc.result(), cm_sum / (200 * 512)


@pytest.fixture(scope="module")
def table(pedestal_run) -> PedestalTable:
    return pedestal_run[0]


@pytest.fixture(scope="module")
def xrays(det: SyntheticDetector):
    return det.xrays(200)


@pytest.fixture(scope="module")
def muons(det: SyntheticDetector):
    return det.muons(120)


def _good(det: SyntheticDetector) -> np.ndarray:
    good = np.ones(det.layout.n_strips, bool)
    good[[17, 200]] = False
    return good


def test_pedestal_run_recovers_means_sigmas_and_flags(det, pedestal_run) -> None:
    table, cm_mean = pedestal_run
    good = _good(det)
    # the data's pedestal includes the mean common mode of its 200 events (~0.2 ADC)
    assert np.abs(table.mean - det.pedestal - cm_mean[det.layout.chip]).max() < 0.5
    assert np.abs(table.noise[good] / det.noise[good] - 1).max() < 0.05
    raw = np.sqrt(det.noise**2 + det.cm_sigma**2 + det.cm_offset_sigma**2)
    assert np.abs(table.sigma[good] / raw[good] - 1).max() < 0.05
    assert list(np.flatnonzero(table.dead)) == [17]
    assert list(np.flatnonzero(table.noisy)) == [200]
    assert np.all(table.count == 200)
    assert np.abs(table.fpn_mean - det.fpn_pedestal - cm_mean[:, None]).max() < 0.5
    thr = table.thresholds(5.0)
    assert np.isinf(thr[[17, 200]]).all() and np.allclose(thr[good], 5 * table.noise[good])


def test_pedestal_noise_is_the_noise_the_fpn_correction_leaves_flags_on_the_own_noise(
    layout,
) -> None:
    """With cm_method fpn (the processing's default) the noise is what the FPN-corrected data
    show (the strip's own plus the error of a 4-channel FPN mean), so hit thresholds are k sigma
    of the data; dead and noisy strips are still judged on the strip's own noise."""
    d = SyntheticDetector(layout, seed=9, fpn_noise=4.0)
    d.noise[17] = 0.3  # dead: its own noise far below the FPN error it would carry
    d.noise[200] = 20.0
    acc = PedestalAccumulator(layout.chip, cm_method="fpn")
    for _ in range(2):
        strips, fpn, _ = d.baseline(100)
        acc.add(strips, fpn=fpn)
    t = acc.result()
    good = _good(d)
    seen = np.sqrt(d.noise**2 + 4.0**2 / 4)  # 4 FPN channels of sigma 4: their mean, sigma 2
    assert np.abs(t.noise[good] / seen[good] - 1).max() < 0.05
    assert list(np.flatnonzero(t.dead)) == [17] and list(np.flatnonzero(t.noisy)) == [200]


def test_pedestal_run_per_cell(layout) -> None:
    d = SyntheticDetector(layout, seed=3, cm_sigma=0.0, cm_offset_sigma=0.0)
    pattern = np.random.default_rng(1).normal(0, 5, (layout.n_strips, 512)).astype(np.float32)
    acc = PedestalAccumulator(layout.chip, per_cell=True, cm_method="none")
    for _ in range(2):
        strips, _, _ = d.baseline(100)
        acc.add(strips + pattern)
    t = acc.result()
    truth = d.pedestal[:, None] + pattern
    err = t.cell_mean - truth  # 200 events: sigma <= 5 / sqrt(200) = 0.35
    assert np.sqrt(np.mean(err**2)) < 0.3
    assert np.abs(t.cell_sigma.mean(axis=1) / d.noise - 1).max() < 0.1


@pytest.mark.parametrize("method", ["fpn", "median", "mean"])
def test_common_mode_correction_removes_injected_noise(det, table, method) -> None:
    strips, fpn, cm = det.baseline(20)
    cfg = ProcessorConfig(baseline="table", cm_method=method)
    out = Processor(det.layout, cfg, table).process(strips, fpn, keep_waveforms=True)
    before = strips - table.mean[None, :, None]
    good = _good(det)
    rms_before = np.sqrt(np.mean(before[:, good] ** 2))
    rms_after = np.sqrt(np.mean(out.waveforms[:, good] ** 2))
    rms_true = np.sqrt(np.mean(det.noise[good] ** 2))
    # injected: noise ~3.6 rms, common mode 4 (white) + 3 (event offset) -> ~6.1 before
    assert rms_after < 0.7 * rms_before
    assert rms_after < 1.15 * rms_true
    # the residual common part left in a chip is small compared with the injected one
    resid_cm = out.waveforms[:, good].reshape(20, -1, 512)
    chip_mean = np.stack(
        [resid_cm[:, det.layout.chip[good] == c].mean(axis=1) for c in range(4)], 1
    )
    assert np.sqrt(np.mean(chip_mean**2)) < 0.25 * np.sqrt(np.mean(cm**2))
    assert out.hit.sum() < 5  # no signal, (almost) no hits


def test_xray_hits_centroids_and_classification(det, table, xrays) -> None:
    strips, fpn, truth = xrays
    out = Processor(det.layout, ProcessorConfig(baseline="table"), table).process(strips, fpn)
    f = out.features
    lay = det.layout
    coord = np.where(lay.axis[None, :] == 0, truth["x_mm"][:, None], truth["y_mm"][:, None])
    dist = np.abs(lay.position_mm[None, :] - coord)
    assert not out.hit[dist > 3.0].any()  # nothing far from the cloud
    assert out.hit[:, _good(det)][dist[:, _good(det)] < 0.3].all()  # strips under the centre
    t_dev = out.peak_bin - np.rint(truth["t0"])[:, None] - det.peak_bins
    assert np.median(np.abs(t_dev[out.hit])) <= 1
    assert np.abs(t_dev[out.amplitude > 50]).max() <= 5
    dx = np.abs(f["x_mm"] - truth["x_mm"])
    dy = np.abs(f["y_mm"] - truth["y_mm"])
    assert np.percentile(np.r_[dx, dy], 95) < 0.2
    assert np.mean(f["cls"] == XRAY) >= 0.95
    assert np.all((f["size_x"] >= 2) & (f["size_x"] <= 8))


def test_muons_are_rejected(det, table, muons) -> None:
    strips, fpn, _ = muons
    out = Processor(det.layout, ProcessorConfig(baseline="table"), table).process(strips, fpn)
    cls = out.features["cls"]
    assert np.mean(cls != XRAY) >= 0.95
    assert np.mean(cls == MUON) >= 0.8


def test_noise_events_are_noise_and_not_triggered(det, table) -> None:
    strips, fpn, _ = det.baseline(30)
    out = Processor(det.layout, ProcessorConfig(baseline="table"), table).process(strips, fpn)
    assert np.all(out.features["cls"] == NOISE)
    assert not out.features["trig"].any()


def test_trigger_options_on_processed_events(det, table, xrays, muons) -> None:
    strips = np.concatenate([xrays[0][:40], muons[0][:40]])
    fpn = np.concatenate([xrays[1][:40], muons[1][:40]])
    truth_mu = np.r_[np.zeros(40, bool), np.ones(40, bool)]

    def trig(**kw) -> np.ndarray:
        cfg = ProcessorConfig(baseline="table", trigger=TriggerConfig(**kw))
        return Processor(det.layout, cfg, table).process(strips, fpn).features["trig"]

    assert trig().mean() > 0.95  # default: >= 2 strips, X and Y, any signal class
    only_x = trig(classes=(XRAY,))
    assert only_x[~truth_mu].mean() >= 0.95 and only_x[truth_mu].mean() <= 0.05
    assert not trig(min_hits=200).any()
    f = (
        Processor(det.layout, ProcessorConfig(baseline="table"), table)
        .process(strips, fpn)
        .features
    )
    lo, hi = np.percentile(f["energy"], [25, 75])
    window = trig(energy_min=float(lo), energy_max=float(hi))
    assert np.array_equal(window, (f["energy"] >= lo) & (f["energy"] <= hi) & f["trig"])


@pytest.mark.parametrize("baseline", ["table", "event", "running"])
@pytest.mark.parametrize("method", ["fpn", "median", "mean", "none"])
def test_processor_matches_reference(det, table, xrays, muons, baseline, method) -> None:
    strips = np.concatenate([xrays[0][:10], muons[0][:6]])
    fpn = np.concatenate([xrays[1][:10], muons[1][:6]])
    fpn_complete = np.ones(fpn.shape[:3], bool)
    fpn_complete[2, 1] = False  # chip 1 of event 2 without FPN: per-chip fallback
    fpn_complete[4, 0, :2] = False
    complete = np.ones(strips.shape[:2], bool)
    complete[3, 50:70] = False  # zero-suppressed rows: no common-mode correction
    cfg = ProcessorConfig(baseline=baseline, cm_method=method)
    proc, proc_ref = Processor(det.layout, cfg, table), Processor(det.layout, cfg, table)
    proc.state[:5] = np.nan  # running: initialised from the first window
    proc_ref.state[:5] = np.nan
    got = proc.process(strips, fpn, fpn_complete, complete, keep_waveforms=True)
    feats, hit, amp, tb, q, w, x = process_ref(proc_ref, strips, fpn, fpn_complete, complete)
    np.testing.assert_allclose(got.waveforms, x, atol=2e-3)
    assert np.array_equal(got.hit, hit)
    np.testing.assert_allclose(got.amplitude, amp, atol=2e-3)
    assert np.array_equal(got.peak_bin, tb) and np.array_equal(got.width, w)
    np.testing.assert_allclose(got.integral, q, rtol=1e-4, atol=0.05)
    np.testing.assert_allclose(proc.state, proc_ref.state, atol=1e-4)
    np.testing.assert_allclose(proc.fpn_state, proc_ref.fpn_state, atol=1e-4)
    for name in feats.dtype.names:
        np.testing.assert_allclose(got.features[name], feats[name], rtol=1e-4, atol=1e-4,
                                   equal_nan=True, err_msg=name)  # fmt: skip
    if method != "none":
        assert np.mean(got.features["cls"][:10] == XRAY) >= 0.9


def test_per_cell_pedestal_table_is_used(det, table) -> None:
    strips, fpn, _ = det.baseline(10)
    pattern = np.random.default_rng(5).normal(0, 8, (240, 512)).astype(np.float32)
    cells = PedestalTable(**{**table.__dict__, "cell_mean": table.mean[:, None] + pattern})
    strips = strips + pattern
    cfg_cells = ProcessorConfig(baseline="table", per_cell=True, cm_method="median")
    cfg_flat = ProcessorConfig(baseline="table", per_cell=False, cm_method="median")
    good = _good(det)
    w_cells = Processor(det.layout, cfg_cells, cells).process(strips, fpn, keep_waveforms=True)
    w_flat = Processor(det.layout, cfg_flat, cells).process(strips, fpn, keep_waveforms=True)
    assert np.std(w_cells.waveforms[:, good]) < 0.5 * np.std(w_flat.waveforms[:, good])


def test_running_baseline_follows_drift_but_not_signals(det, table) -> None:
    cfg = ProcessorConfig(baseline="running", alpha=0.05)
    proc = Processor(det.layout, cfg, table)
    drift = 4.0  # ADC: the pedestals move after the table was taken
    for _ in range(4):
        strips, fpn, _ = det.baseline(40)
        strips[:, 5, 100:160] += 200.0  # strip 5 carries a pulse in every event
        proc.process(strips + drift, fpn + drift)
    good = _good(det)
    good[5] = False
    err = proc.state - (det.pedestal + drift)
    assert np.abs(err[good]).max() < 1.0
    assert abs(proc.state[5] - table.mean[5]) < 0.5  # never updated: always hit
    assert np.abs(proc.fpn_state - (det.fpn_pedestal + drift)).max() < 1.0
    proc.reset()
    assert np.array_equal(proc.state, table.mean.astype(np.float64))


def _zero_suppress(strips: np.ndarray, fpn: np.ndarray, layout, thr: np.ndarray) -> list[Event]:
    """Events as a card with ZS would send them: runs over thr, 8 bins before, 4 after."""
    daq = layout.lut
    addr = {int(s): (c, ch, ix) for (c, ch, ix), s in np.ndenumerate(daq) if s >= 0}
    events = []
    for e in range(strips.shape[0]):
        chans = []
        for s in range(strips.shape[1]):
            over = strips[e, s] > thr[s]
            keep = np.zeros(512, bool)
            for t in np.flatnonzero(over):
                keep[max(0, t - 8) : t + 5] = True
            if keep.any():
                c, ch, ix = addr[s]
                bins = np.flatnonzero(keep)
                chans.append(Channel(c, ch, ix, bins.astype(np.uint16),
                                     np.rint(strips[e, s, bins]).astype(np.uint16)))  # fmt: skip
        for ch in range(4):
            for k, ix in enumerate((13, 24, 47, 58)):
                adc = np.rint(fpn[e, ch, k]).astype(np.uint16)
                chans.append(Channel(0, ch, ix, np.arange(512, dtype=np.uint16), adc))
        events.append(Event(channels=chans))
    return events


def test_zero_suppressed_events_through_scatter(det, table, xrays) -> None:
    strips, fpn, truth = xrays[0][:20], xrays[1][:20], xrays[2]
    thr = table.mean + 5 * table.sigma
    events = _zero_suppress(strips, fpn, det.layout, thr)
    proc = Processor(det.layout, ProcessorConfig(baseline="table"), table)
    out = proc.process_flat(flatten_events(events))
    full = proc.process(np.rint(strips), np.rint(fpn))
    assert out.features.shape == (20,)
    assert np.mean(out.features["cls"] == XRAY) >= 0.9
    assert np.abs(out.features["x_mm"] - truth["x_mm"][:20]).max() < 0.3
    inter = (out.hit & full.hit).sum()
    assert inter >= 0.8 * full.hit.sum()  # ZS loses only the faintest edge strips


@pytest.mark.parametrize("zs", [False, True])
def test_decoded_stream_through_processor(det, table, xrays, zs) -> None:
    from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
    from agetdaq.protocol.encode import encode_events
    from agetdaq.readout.datapath.processing.waveforms import FlatBatch

    strips, fpn, truth = xrays[0][:8], xrays[1][:8], xrays[2]
    thr = table.mean + 5 * table.sigma if zs else np.full(240, -np.inf, np.float32)
    events = _zero_suppress(strips, fpn, det.layout, thr)
    for i, ev in enumerate(events):
        ev.event_count = 100 + i
    buf, lengths = pack_datagrams(encode_events(events))
    dec = StreamDecoder()
    batch = dec.decode(buf, lengths)
    assert len(batch) == 8 and not any(dec.error_counts().values())
    proc = Processor(det.layout, ProcessorConfig(baseline="table"), table)
    out = proc.process_flat(FlatBatch.from_decoded(batch), events=batch.event_count)
    f = out.features
    assert list(f["event"]) == list(range(100, 108))
    assert np.all(f["cls"] == XRAY)
    assert np.abs(f["x_mm"] - truth["x_mm"][:8]).max() < 0.2
    assert np.abs(f["y_mm"] - truth["y_mm"][:8]).max() < 0.2
