"""Processing kernels against their plain numpy references, plus hand-made cases: waveforms,
pedestals, common mode, hits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agetdaq.protocol.event import Channel, Event
from agetdaq.readout.datapath.processing import reference as ref
from agetdaq.readout.datapath.processing.commonmode import (
    fpn_common_mode,
    median_inplace,
    quiet_common_mode,
    quiet_strips,
    subtract_common_mode,
)
from agetdaq.readout.datapath.processing.hits import find_hits, row_pulse
from agetdaq.readout.datapath.processing.pedestal import (
    accumulate_cell_stats,
    accumulate_row_stats,
    subtract_event_baseline,
    subtract_pedestal,
    subtract_running_baseline,
    window_mean,
)
from agetdaq.readout.datapath.processing.waveforms import (
    FlatBatch,
    StripLayout,
    flatten_events,
    scatter,
)

RNG = np.random.default_rng(12345)
N_S, N_T = 240, 512


@pytest.fixture(scope="module", name="layout")
def layout_fixture() -> StripLayout:
    return StripLayout.default()


def _rand(n: int, n_s: int = N_S, n_t: int = N_T) -> np.ndarray:
    return RNG.normal(250.0, 4.0, (n, n_s, n_t)).astype(np.float32)


# -- waveforms ------------------------------------------------------------------------------------


def test_layout_follows_default_mapping(layout: StripLayout) -> None:
    # PROTOCOL.md §9 default: chips 0-1 = X, 2-3 = Y, strip i at (i - 59.5) * 0.5 mm.
    assert layout.n_strips == 240
    assert list(layout.chip[[0, 59, 60, 119, 120, 239]]) == [0, 0, 1, 1, 2, 3]
    assert layout.axis[119] == 0 and layout.axis[120] == 1
    assert layout.position_mm[0] == pytest.approx(-29.75)
    # X0 = chip 0, physical channel 3 -> DAQ index 4 with rst_len 0 (§4)
    assert layout.lut[0, 0, 4] == 0
    assert all(
        layout.fpn_lut[0, c, ix] == k for c in range(4) for k, ix in enumerate((13, 24, 47, 58))
    )
    assert layout.fpn_lut[0, 0, 4] == -1 and layout.fpn_lut[1, 0, 13] == -1


def _chan(card: int, chip: int, ix: int, bins, adc) -> Channel:
    return Channel(card, chip, ix, np.asarray(bins, np.uint16), np.asarray(adc, np.uint16))


def test_scatter_hand_made(layout: StripLayout) -> None:
    full = np.arange(512) % 4096
    ev0 = Event(
        channels=[
            _chan(0, 0, 4, np.arange(512), full),  # X0, full readout
            _chan(0, 0, 5, [100, 101, 102], [300, 310, 320]),  # X1, zero-suppressed run
            _chan(0, 2, 4, [7, 600], [400, 401]),  # Y0, bin 600 out of range
            _chan(0, 1, 13, np.arange(512), np.full(512, 260)),  # chip 1 FPN slot 0
            _chan(0, 0, 0, [0], [1]),  # reset channel: ignored
            _chan(3, 0, 4, [0], [1]),  # card 3 is not in the mapping: ignored
        ]
    )
    ev1 = Event(channels=[_chan(0, 0, 5, [0], [999]), _chan(0, 0, 5, [1], [998])])  # duplicate
    dense = scatter(flatten_events([ev0, ev1]), layout, fill=250.0, fpn_fill=251.0)
    s = dense.strips
    assert np.array_equal(s[0, 0], full.astype(np.float32))
    assert list(s[0, 1, 99:104]) == [250, 300, 310, 320, 250]
    assert s[0, 120, 7] == 400 and s[0, 120, 8] == 250
    assert np.all(s[0, 2] == 250) and not dense.present[0, 2]
    assert list(np.flatnonzero(dense.present[0])) == [0, 1, 120]
    assert list(np.flatnonzero(dense.complete[0])) == [0]
    assert dense.fpn_complete[0, 1, 0] and dense.fpn_complete[0].sum() == 1
    assert np.all(dense.fpn[0, 1, 0] == 260) and dense.fpn_present[0, 1, 0]
    assert np.all(dense.fpn[0, 0, 0] == 251) and dense.fpn_present[0].sum() == 1
    assert s[1, 1, 0] == 999 and s[1, 1, 1] == 998 and dense.present[1].sum() == 1
    assert (dense.ignored_rows, dense.bad_bins, dense.duplicate_rows) == (2, 1, 1)


def test_scatter_matches_reference(layout: StripLayout) -> None:
    events = []
    for _ in range(6):
        chans = []
        for ch in range(4):
            for ix in RNG.choice(79, 30, replace=False):
                if RNG.random() < 0.3:
                    bins = np.arange(512)
                else:
                    lo = RNG.integers(0, 540)
                    bins = np.arange(lo, lo + RNG.integers(1, 40))
                chans.append(_chan(0, ch, int(ix), bins, RNG.integers(0, 4096, bins.size)))
        events.append(Event(channels=chans))
    flat = flatten_events(events)
    fill = RNG.uniform(200, 300, N_S).astype(np.float32)
    fpn_fill = RNG.uniform(200, 300, (4, 4)).astype(np.float32)
    dense = scatter(flat, layout, fill, fpn_fill)
    strips, fpn, present, fpn_present, complete, fpn_complete, counters = ref.scatter_ref(
        flat, layout, fill, fpn_fill
    )
    assert np.array_equal(dense.strips, strips)
    assert np.array_equal(dense.fpn, fpn)
    assert np.array_equal(dense.present, present)
    assert np.array_equal(dense.fpn_present, fpn_present)
    assert np.array_equal(dense.complete, complete) and complete.any()
    assert np.array_equal(dense.fpn_complete, fpn_complete)
    assert np.all(present[complete]) and not np.all(complete[present])
    assert [dense.ignored_rows, dense.bad_bins, dense.duplicate_rows] == counters
    assert counters[0] > 0 and counters[1] > 0


def test_flat_batch_validation_errors() -> None:
    flat = flatten_events([Event(channels=[_chan(0, 0, 4, [1, 2], [3, 4])])])
    flat.validate()
    bad = FlatBatch(**{**flat.__dict__, "n_samples": np.array([5])})
    with pytest.raises(ValueError, match="samples out of bounds"):
        bad.validate()
    bad = FlatBatch(**{**flat.__dict__, "n_chan": np.array([2])})
    with pytest.raises(ValueError, match="channel rows out of bounds"):
        bad.validate()
    bad = FlatBatch(**{**flat.__dict__, "chip": np.array([0, 1])})
    with pytest.raises(ValueError, match="one entry per row"):
        bad.validate()


# -- pedestals ------------------------------------------------------------------------------------


def test_pedestal_subtraction_matches_reference() -> None:
    x = _rand(3)
    ped = RNG.uniform(240, 260, N_S).astype(np.float32)
    cells = RNG.uniform(240, 260, (N_S, N_T)).astype(np.float32)
    np.testing.assert_allclose(window_mean(x, 5, 55), ref.window_mean_ref(x, 5, 55), atol=1e-4)
    for table in (ped, cells):
        y = x.copy()
        subtract_pedestal(y, table)
        np.testing.assert_array_equal(y, ref.subtract_pedestal_ref(x, table))
    y = x.copy()
    subtract_event_baseline(y, 5, 55)
    np.testing.assert_allclose(y, ref.subtract_event_baseline_ref(x, 5, 55), atol=1e-4)
    assert abs(float(y[:, :, 5:55].mean())) < 1e-3


def test_running_baseline_matches_reference() -> None:
    x = _rand(8)
    x[3, 10, :] += 100.0  # a loud strip in one event must not move the baseline
    state = np.full(N_S, 250.0)
    state[:5] = np.nan  # initialised from the first window mean
    limit = np.full(N_S, 6.0, np.float32)
    y = x.copy()
    st = state.copy()
    subtract_running_baseline(y, st, 5, 55, 0.1, limit)
    y_ref, st_ref = ref.running_baseline_ref(x, state, 5, 55, 0.1, limit)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    np.testing.assert_allclose(st, st_ref, atol=1e-6)
    assert not np.isnan(st).any()


def test_row_and_cell_stats_merge_batches() -> None:
    x = _rand(12, 20, 64) * RNG.uniform(0.5, 2, (1, 20, 1)).astype(np.float32)
    use = RNG.random((12, 20)) < 0.8
    count, mean, m2 = np.zeros(20, np.int64), np.zeros(20), np.zeros(20)
    c_count, c_mean, c_m2 = np.zeros(20, np.int64), np.zeros((20, 64)), np.zeros((20, 64))
    for part in (slice(0, 5), slice(5, 12)):  # two batches = one
        accumulate_row_stats(x[part], use[part], count, mean, m2)
        accumulate_cell_stats(x[part], use[part], c_count, c_mean, c_m2)
    r_count, r_mean, r_sigma = ref.row_stats_ref(x, use)
    assert np.array_equal(count, r_count)
    np.testing.assert_allclose(mean, r_mean, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(m2 / count), r_sigma, rtol=1e-9)
    rc_mean, rc_sigma = ref.cell_stats_ref(x, use)
    np.testing.assert_allclose(c_mean, rc_mean, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(c_m2 / c_count[:, None]), rc_sigma, rtol=1e-8, atol=1e-9)


# -- common mode ----------------------------------------------------------------------------------


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=70))
def test_median_inplace_is_numpy_median(values: list[int]) -> None:
    a = np.array(values, np.float32)
    assert median_inplace(a.copy(), a.size) == np.median(a)


def test_common_mode_kernels_match_reference() -> None:
    chip = np.repeat(np.arange(4), 60).astype(np.int64)
    x = _rand(4) - 250.0
    x[0, 3, 200:220] += 80.0  # a pulse: not quiet
    fpn = RNG.normal(250, 3, (4, 4, 4, N_T)).astype(np.float32)
    fpn_present = RNG.random((4, 4, 4)) < 0.6
    fpn_present[1, 2] = False  # chip 2 of event 1 has no FPN
    base = RNG.uniform(245, 255, (4, 4)).astype(np.float32)
    cm, ok = fpn_common_mode(fpn, fpn_present, base)
    cm_r, ok_r = ref.fpn_common_mode_ref(fpn, fpn_present, base)
    assert np.array_equal(ok, ok_r) and not ok[1, 2]
    np.testing.assert_allclose(cm[ok], cm_r[ok], atol=1e-5)
    limit = np.full(N_S, 16.0, np.float32)
    quiet = quiet_strips(x, limit)
    assert np.array_equal(quiet, ref.quiet_strips_ref(x, limit)) and not quiet[0, 3]
    for use_median in (True, False):
        qcm, qok = quiet_common_mode(x, chip, quiet, use_median, 4)
        qcm_r, qok_r = ref.quiet_common_mode_ref(x, chip, quiet, use_median, 4)
        assert np.array_equal(qok, qok_r)
        np.testing.assert_allclose(qcm, qcm_r, atol=1e-5)
    y = x.copy()
    subtract_common_mode(y, cm, chip, ok)
    np.testing.assert_allclose(y, ref.subtract_common_mode_ref(x, cm, chip, ok), atol=1e-5)
    assert np.array_equal(y[1, 120:180], x[1, 120:180])  # chip 2 without estimate untouched


# -- hits -----------------------------------------------------------------------------------------


def test_row_pulse_hand_made() -> None:
    x = np.zeros(512, np.float32)
    x[2:8] = [5, 12, 20, 8, 1, 30]  # run 2..5 around the first peak; 7 is an isolated spike
    x[7] = 20.0
    amp, tb, q, w, hit = row_pulse(x, 10.0, 4.0, 3)
    assert (amp, tb, q, w, hit) == (20.0, 4, 45.0, 4, True)  # first bin of the maximum
    assert row_pulse(x, 10.0, 4.0, 5)[3:] == (4, False)
    assert row_pulse(x, 25.0, 4.0, 1) == (0.0, -1, 0.0, 0, False)  # not a candidate
    x[511] = 50.0
    assert row_pulse(x, 10.0, 4.0, 1)[:4] == (50.0, 511, 50.0, 1)  # pulse at the window end


@given(
    st.lists(st.integers(-4, 6), min_size=1, max_size=100),
    st.sampled_from([-np.inf, -1.0, 2.0, 5.0, np.inf]),
    st.integers(1, 4),
)
def test_row_pulse_is_first_argmax_above_threshold(values, thr_hit, n_min) -> None:
    x = np.array(values, np.float32)
    amp, tb, q, w, hit = row_pulse(x, thr_hit, 0.5, n_min)
    if x.max() > thr_hit:
        assert (amp, tb) == (x.max(), int(np.argmax(x)))  # first bin of a tied maximum
        want = ref.find_hits_ref(x[None, None], np.float32([thr_hit]), np.float32([0.5]), n_min)
        assert (q, w, hit) == (want[2][0, 0], want[3][0, 0], want[4][0, 0])
    else:
        assert (amp, tb, q, w, hit) == (0.0, -1, 0.0, 0, False)


def test_find_hits_matches_reference() -> None:
    x = RNG.normal(0, 3, (5, N_S, N_T)).astype(np.float32)
    for e in range(5):
        for s in RNG.choice(N_S, 12, replace=False):
            t0 = RNG.integers(0, 500)
            x[e, s, t0 : t0 + 20] += RNG.uniform(5, 200) * np.hanning(22)[1:-1][: 512 - t0]
    thr_hit = RNG.uniform(10, 20, N_S).astype(np.float32)
    thr_s = (thr_hit * 0.4).astype(np.float32)
    got = find_hits(x, thr_hit, thr_s, 4)
    want = ref.find_hits_ref(x, thr_hit, thr_s, 4)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-3)
    assert 20 < got[4].sum() < 60


# -- pedestal accumulator ------------------------------------------------------------------------


def test_pedestal_accumulator_uses_complete_rows_only(layout: StripLayout) -> None:
    from agetdaq.readout.datapath.processing.pedestal import PedestalAccumulator

    events = []
    for e in range(4):
        full = 240 + (np.arange(512) + e) % 4  # mean 241.5, population variance 1.25
        events.append(
            Event(channels=[_chan(0, 0, 4, np.arange(512), full), _chan(0, 0, 5, [3], [900])])
        )
    dense = scatter(flatten_events(events), layout, fill=250.0)
    acc = PedestalAccumulator(layout.chip, cm_method="none")
    acc.add_dense(dense)
    table = acc.result()
    assert table.count[0] == 4 and table.count[1] == 0 and table.count[2] == 0
    assert table.mean[0] == pytest.approx(241.5)
    assert table.sigma[0] == pytest.approx(np.sqrt(1.25), rel=1e-6)
    assert table.dead[1] and table.dead[2] and not table.dead[0]
    with pytest.raises(ValueError, match="strips must be"):
        acc.add(np.zeros((2, 10, 512), np.float32))
