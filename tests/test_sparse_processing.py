"""The sparse processing path (zero-suppressed events on the samples that exist) against the dense
path (scatter to 240 x 512, then the fused kernel) and the numpy reference: the same features,
hits, class, trigger, running baselines and corrected waveforms, bit for bit, on the emulator's
physics (tests/emulated_fe55.py, the card's zero suppression, with and without the FPN channels
sent whole) and on random batches that mix partial rows, complete rows, FPN channels, unknown
channels and bins past the last cell; the FPN common mode on zero-suppressed rows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq

from agetdaq.protocol.event import Channel, Event
from agetdaq.readout.datapath.processing import reference as ref
from agetdaq.readout.datapath.processing.median import median_rows, median_rows_ref
from agetdaq.readout.datapath.processing.pedestal import PedestalTable
from agetdaq.readout.datapath.processing.pipeline import Processor, ProcessorConfig
from agetdaq.readout.datapath.processing.sparse import sparse_check, sparse_row_pulse
from agetdaq.readout.datapath.processing.waveforms import (
    FlatBatch,
    StripLayout,
    flatten_events,
    scatter,
)

MODES = [(b, cm) for b in ("table", "running") for cm in ("fpn", "median", "mean", "none")]
MODES += [(b, "fpn-complete-rows") for b in ("table", "running")]  # cm_zero_suppressed off


@pytest.fixture(scope="module", name="layout")
def layout_fixture() -> StripLayout:
    return StripLayout.default()


@pytest.fixture(scope="module", name="table")
def table_fixture(layout: StripLayout) -> PedestalTable:
    rng = np.random.default_rng(3)
    t = PedestalTable.flat(layout.n_strips, 250.0, 3.0)
    t.mean = rng.uniform(240.0, 260.0, layout.n_strips).astype(np.float32)
    t.noise = rng.uniform(2.0, 4.0, layout.n_strips).astype(np.float32)
    t.sigma = (t.noise * 1.3).astype(np.float32)
    t.fpn_mean = rng.uniform(240.0, 260.0, (4, 4)).astype(np.float32)
    t.noisy[7] = True
    return t


def _addresses(layout: StripLayout) -> tuple[dict[int, tuple[int, int, int]], list]:
    """strip -> (card, chip, DAQ index); FPN (card, chip, index) list."""
    strips = {int(layout.lut[c, h, i]): (c, h, i) for c, h, i in np.argwhere(layout.lut >= 0)}
    fpn = [tuple(int(v) for v in a) for a in np.argwhere(layout.fpn_lut >= 0)]
    return strips, fpn


def random_batch(layout: StripLayout, table: PedestalTable, n: int, seed: int) -> FlatBatch:
    """Zero-suppressed-looking events: runs of samples on a few strips (pulses on some), now and
    then a complete strip row, FPN rows complete or partial, an unknown channel, late bins."""
    rng = np.random.default_rng(seed)
    strips, fpn = _addresses(layout)
    events = []
    for _ in range(n):
        chans = []
        centre = int(rng.integers(0, 240))
        for s in sorted({int(v) % 240 for v in centre + rng.integers(-6, 7, rng.integers(0, 14))}):
            card, chip, ix = strips[s]
            base = float(table.mean[s])
            kind = rng.random()
            if kind < 0.1:  # a complete row (quiet or with a pulse)
                bins = np.arange(512)
            elif kind < 0.15:  # two runs
                a = int(rng.integers(0, 200))
                bins = np.r_[a : a + 20, a + 40 : a + 70]
            elif kind < 0.18:  # a run through the last cell
                bins = np.arange(505, 515)
            else:
                a = int(rng.integers(0, 480))
                bins = np.arange(a, a + int(rng.integers(1, 40)))
            adc = base + rng.normal(0, 3, bins.size)
            if rng.random() < 0.6:
                peak = int(rng.integers(0, 512))
                adc += rng.uniform(20, 300) * np.exp(-0.5 * ((bins - peak) / 4.0) ** 2)
            if kind < 0.1 and rng.random() < 0.5:
                adc = np.full(bins.size, round(base + rng.normal(0, 2)))  # quiet, flat
            chans.append(Channel(card, chip, ix, bins.astype(np.uint16),
                                 np.clip(np.rint(adc), 0, 4095).astype(np.uint16)))  # fmt: skip
        for card, chip, ix in fpn:
            u = rng.random()
            if u < 0.5:
                bins = np.arange(512)
            elif u < 0.6:
                bins = np.arange(100, 140)
            else:
                continue
            adc = table.fpn_mean[chip, 0] + rng.normal(0, 2, bins.size)
            chans.append(Channel(card, chip, ix, bins.astype(np.uint16),
                                 np.rint(adc).astype(np.uint16)))  # fmt: skip
        if rng.random() < 0.2:  # a channel that is neither a strip nor FPN
            chans.append(Channel(0, 0, 0, np.arange(5, dtype=np.uint16), np.full(5, 9, np.uint16)))
        events.append(Event(channels=chans))
    return flatten_events(events)


def _dense(p: Processor, flat: FlatBatch, events=None):
    fill, fpn_fill = p.fill_values()
    d = scatter(flat, p.layout, fill, fpn_fill)
    proc = p.process_dense(d, events, keep_waveforms=True)
    return proc, d


def assert_same(dense, sparse) -> None:
    for name in dense.features.dtype.names:
        np.testing.assert_array_equal(dense.features[name], sparse.features[name], err_msg=name)
    for name in ("hit", "amplitude", "peak_bin", "integral", "width"):
        np.testing.assert_array_equal(getattr(dense, name), getattr(sparse, name), err_msg=name)
    assert len(sparse.waveforms) == len(dense.waveforms)
    for i in range(len(dense.waveforms)):
        np.testing.assert_array_equal(dense.waveforms[i], sparse.waveforms[i], err_msg=f"ev {i}")


def _compare(layout, table, cfg, batches) -> tuple[Processor, Processor]:
    pd, ps = Processor(layout, cfg, table), Processor(layout, cfg, table)
    pr = Processor(layout, cfg, table)
    for flat in batches:
        assert ps.sparse_ready()
        usable, _, _ = sparse_check(flat.chan_start, flat.n_chan, flat.card, flat.chip,
                                    flat.channel, flat.sample_start, flat.n_samples, flat.bins,
                                    layout.lut, layout.fpn_lut, layout.n_strips)  # fmt: skip
        assert usable
        dense, d = _dense(pd, flat)
        sparse, ignored, bad = ps.process_sparse(flat, keep_waveforms=True)
        assert (ignored, bad) == (d.ignored_rows, d.bad_bins)
        assert_same(dense, sparse)
        np.testing.assert_array_equal(d.sampled(), ref.sampled_ref(flat, layout))
        fill, fpn_fill = pr.fill_values()
        r = ref.scatter_ref(flat, layout, fill, fpn_fill)
        _, hit_ref, amp_ref, *_ = ref.process_ref(pr, r[0], r[1], r[5], r[4], d.sampled())
        np.testing.assert_array_equal(hit_ref, sparse.hit)
        np.testing.assert_allclose(amp_ref, sparse.amplitude, rtol=1e-6)
        np.testing.assert_array_equal(pd.state, ps.state)
        np.testing.assert_array_equal(pd.fpn_state, ps.fpn_state)
    return pd, ps


@pytest.mark.parametrize(("baseline", "cm"), MODES)
def test_sparse_equals_dense_on_random_batches(layout, table, baseline, cm) -> None:
    zs = cm != "fpn-complete-rows"
    cfg = ProcessorConfig(
        baseline=baseline, cm_method=cm if zs else "fpn", cm_zero_suppressed=zs, alpha=0.3
    )
    batches = [random_batch(layout, table, 24, seed) for seed in range(4)]
    _compare(layout, table, cfg, batches)


def test_sparse_equals_dense_and_reference_on_emulated_physics(layout) -> None:
    daq = EmulatedDaq("calibration", seed=5, script="run")  # card pedestals + zero suppression
    kinds = ["xray"] * 40 + ["muon"] * 8 + ["pedestal"] * 4
    built, _ = daq._built(kinds, np.linspace(0.0, 0.01, len(kinds)))
    flat = FlatBatch.from_decoded(built.decoded)
    assert daq.processor.wants_sparse(flat), "the card's zero suppression: a sparse batch"
    for baseline in ("table", "running"):
        cfg = ProcessorConfig(baseline=baseline, cm_method="fpn")
        pd = Processor(layout, cfg, daq.processor.table)
        ps = copy.deepcopy(pd)
        dense, d = _dense(pd, flat, built.event_id)
        sparse, _, _ = ps.process_sparse(flat, built.event_id, keep_waveforms=True)
        assert_same(dense, sparse)
        assert np.count_nonzero(sparse.features["cls"] == 1) >= 20  # X-ray-like events
        pr = Processor(layout, cfg, daq.processor.table)
        f_ref, hit_ref, *_ = ref.process_ref(pr, d.strips, d.fpn, d.fpn_complete, d.complete)
        np.testing.assert_array_equal(hit_ref, sparse.hit)
        np.testing.assert_array_equal(f_ref["cls"], sparse.features["cls"])
        np.testing.assert_array_equal(f_ref["trig"], sparse.features["trig"])


def test_a_running_baseline_that_moves_within_a_batch(layout, table) -> None:
    """Complete quiet rows pull a strip's running baseline 40 ADC down within the batch: in the
    dense path its missing samples then read +40 (fill value minus baseline) and make a hit, in
    an event that does not even send the strip; the sparse path must find the same."""
    strips, _ = _addresses(layout)
    s = 50
    card, chip, ix = strips[s]
    base = round(float(table.mean[s]))
    events = []
    for k in range(1, 5):
        flat_row = np.full(512, base - 13 * k, np.uint16)
        events.append(Event(channels=[Channel(card, chip, ix, np.arange(512, dtype=np.uint16),
                                              flat_row)]))  # fmt: skip
    events.append(Event(channels=[Channel(*strips[s + 1], np.arange(200, 230, dtype=np.uint16),
                                          np.full(30, 300, np.uint16))]))  # fmt: skip
    events.append(Event(channels=[Channel(card, chip, ix, np.arange(10, 20, dtype=np.uint16),
                                          np.full(10, base, np.uint16))]))  # fmt: skip
    cfg = ProcessorConfig(baseline="running", cm_method="none", alpha=1.0, quiet_k=10.0)
    pd, _ = _compare(layout, table, cfg, [flatten_events(events)])
    assert pd.state[s] < table.mean[s] - 30
    dense, _ = _dense(Processor(layout, cfg, table), flatten_events(events))
    assert dense.hit[4, s], "the moved baseline makes the absent strip a hit in the dense path"


def test_zero_suppressed_rows_take_the_fpn_common_mode_on_their_samples(layout, table) -> None:
    """A chip-wide +40 ADC common-mode bump (bins 200-259) on the FPN channels, sent whole, and on
    two zero-suppressed strips of that chip, one with a 150 ADC pulse at bin 230, and a -60 ADC
    dip (bins 400-459) where the strips were not sent: with ``cm_zero_suppressed`` the bump is
    removed from the samples sent (the quiet strip is no hit, the pulse reads 150), the missing
    bins stay at the background (no hit from the dip); without, the bump makes both hits."""
    strips, fpn = _addresses(layout)
    s_quiet, s_pulse = 60, 62
    chip = int(layout.chip[s_quiet])
    assert layout.chip[s_pulse] == chip
    t = np.arange(512)
    bump = np.where((t >= 200) & (t < 260), 40.0, 0.0) + np.where((t >= 400) & (t < 460), -60.0, 0)
    chans = []
    for card, c, ix in fpn:
        if c == chip:
            k = int(layout.fpn_lut[card, c, ix])
            adc = np.rint(table.fpn_mean[chip, k] + bump).astype(np.uint16)
            chans.append(Channel(card, c, ix, t.astype(np.uint16), adc))
    sent = np.arange(180, 290)
    pulse = 150.0 * np.exp(-0.5 * ((sent - 230) / 6.0) ** 2)
    for s, extra in ((s_quiet, 0.0), (s_pulse, pulse)):
        adc = np.rint(table.mean[s] + bump[sent] + extra).astype(np.uint16)
        chans.append(Channel(*strips[s], sent.astype(np.uint16), adc))
    flat = flatten_events([Event(channels=chans)] * 3)
    for zs in (True, False):
        for baseline in ("table", "running"):
            cfg = ProcessorConfig(baseline=baseline, cm_method="fpn", cm_zero_suppressed=zs)
            _compare(layout, table, cfg, [flat])
        sparse, _, _ = Processor(layout, cfg, table).process_sparse(flat, keep_waveforms=True)
        hit, amp, width = sparse.hit[0], sparse.amplitude[0], sparse.width[0]
        assert hit[s_pulse] and hit[s_quiet] != zs, (zs, hit[s_quiet])
        if zs:
            assert abs(amp[s_pulse] - 150.0) < 3.0 and width[s_pulse] < 60, (amp, width)
            assert np.count_nonzero(hit) == 1
            wf = sparse.waveforms[0]
            assert np.abs(wf[s_quiet, sent]).max() < 3.0  # the bump removed where sent
            assert np.abs(wf[s_quiet, 400:460]).max() < 3.0  # missing bins: the background
        else:
            assert abs(amp[s_pulse] - 190.0) < 3.0, amp[s_pulse]


def test_batches_the_sparse_path_refuses(layout, table) -> None:
    strips, _ = _addresses(layout)
    ch = strips[10]
    twice = Event(channels=[Channel(*ch, np.arange(3, dtype=np.uint16), np.ones(3, np.uint16))] * 2)
    backwards = Event(channels=[Channel(*ch, np.array([5, 4], np.uint16), np.ones(2, np.uint16))])
    p = Processor(layout, ProcessorConfig(), table)
    for ev in (twice, backwards):
        flat = flatten_events([ev])
        assert not p.wants_sparse(flat)
    assert not Processor(layout, ProcessorConfig(baseline="event"), table).sparse_ready()
    full = flatten_events([Event(channels=[Channel(*strips[s], np.arange(512, dtype=np.uint16),
                                                   np.full(512, 250, np.uint16))
                                           for s in range(20)])])  # fmt: skip
    assert not p.wants_sparse(full), "full readout stays dense"
    nan = Processor(layout, ProcessorConfig(baseline="running"), table)
    nan.state[3] = np.nan
    assert not nan.sparse_ready()


def test_sparse_row_pulse_matches_a_laid_out_row() -> None:
    rng = np.random.default_rng(9)
    no_cm = np.zeros(512, np.float32)
    for _ in range(300):
        a = int(rng.integers(0, 472))
        bins = np.unique(rng.integers(a, a + 40, int(rng.integers(1, 30)))).astype(np.uint16)
        adc = rng.integers(240, 400, bins.size).astype(np.uint16)
        b = np.float32(rng.uniform(245, 255))
        thr_hit, thr_s = np.float32(rng.uniform(5, 60)), np.float32(rng.uniform(2, 20))
        n_min = int(rng.integers(1, 5))
        row = np.zeros(512, np.float32)
        row[bins] = adc.astype(np.float32) - b
        got = sparse_row_pulse(bins, adc, 0, bins.size, b, no_cm, False, thr_hit, thr_s, n_min)
        want = ref.find_hits_ref(row[None, None], np.array([thr_hit]), np.array([thr_s]), n_min)
        assert got[0] == want[0][0, 0] and got[1] == want[1][0, 0] and got[4] == want[4][0, 0]
        assert got[3] == want[3][0, 0] and np.isclose(got[2], want[2][0, 0], rtol=1e-5)


def test_fast_median_is_numpy_median() -> None:
    rng = np.random.default_rng(4)
    out = np.empty(512, np.float32)
    for trial in range(60):
        spread = 4.0 if trial % 3 else 60.0
        raw = np.rint(rng.normal(250, spread, (64, 512)) + rng.normal(0, 3, 512))
        raw = raw.astype(np.float32)
        base = rng.uniform(240, 260, 64).astype(np.float32)
        if trial % 4 == 0:
            base = np.rint(base)  # ties between strips
        m = int(rng.integers(1, 65))
        rows = np.sort(rng.choice(64, m, replace=False)).astype(np.int64)
        assert median_rows(raw, base, rows, m, out)
        np.testing.assert_array_equal(out, median_rows_ref(raw, base, rows))
    assert not median_rows(raw + np.float32(0.25), base, rows, m, out)  # not whole: refused
