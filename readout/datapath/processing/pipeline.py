"""The online processing chain for a batch of events: baseline -> common mode -> hits -> features
-> classification -> software trigger.

:class:`Processor` keeps the configuration and the state (running baselines) and calls one fused
numba kernel, :func:`process_events`, that walks the batch event by event so that each event's
waveforms stay in cache; it is built from the per-row / per-event kernels of the other modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from agetdaq.readout.config import ConfigError, load, setting
from agetdaq.readout.datapath.processing.commonmode import (
    CM_FPN,
    CM_MEAN,
    CM_MEDIAN,
    CM_METHODS,
    CM_NONE,
    fpn_common_mode_event,
    quiet_common_mode_event,
)
from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE, axis_order, event_features
from agetdaq.readout.datapath.processing.hits import row_pulse
from agetdaq.readout.datapath.processing.pedestal import (
    DEFAULT_WINDOW,
    PedestalTable,
    row_window_mean,
)
from agetdaq.readout.datapath.processing.trigger import (
    SelectionConfig,
    TriggerConfig,
    classify,
    trigger,
)
from agetdaq.readout.datapath.processing.waveforms import (
    DenseBatch,
    FlatBatch,
    StripLayout,
    scatter,
)

BASELINE_TABLE, BASELINE_EVENT, BASELINE_RUNNING = 0, 1, 2
BASELINE_MODES = {"table": BASELINE_TABLE, "event": BASELINE_EVENT, "running": BASELINE_RUNNING}


@dataclass(frozen=True)
class ProcessorConfig:
    """Processing settings; TOML table ``[processing]`` (+ ``.selection`` / ``.trigger``)."""

    baseline: str = setting(
        "running", "table | event | running (pedestal.py)", choices=tuple(BASELINE_MODES)
    )
    window: tuple[int, int] = setting(
        DEFAULT_WINDOW, "pre-trigger bins [b0, b1) for event/running baselines", lo=0, hi=512
    )
    alpha: float = setting(0.02, "running-baseline update weight per event", lo=0.0, hi=1.0)
    per_cell: bool = setting(False, "table mode: per-SCA-cell pedestals when the table has them")
    cm_method: str = setting(
        "fpn", "fpn | median | mean | none (fpn falls back to mean)", choices=tuple(CM_METHODS)
    )
    quiet_k: float = setting(5.0, "quiet strip: max |x| < quiet_k * raw sigma", gt=0.0)
    k_hit: float = setting(5.0, "hit: maximum > k_hit * noise", gt=0.0)
    k_sample: float = setting(2.0, "pulse samples: > k_sample * noise", gt=0.0)
    n_min: int = setting(4, "at least this many consecutive pulse samples", lo=1, hi=512)
    max_gap: int = setting(1, "silent strips bridged inside a cluster", lo=0, hi=240)
    default_pedestal: float = setting(
        250.0, "before any pedestal table (card target, PROTOCOL.md §2)", lo=0.0, hi=4095.0
    )
    default_noise: float = setting(3.0, "ADC sigma before any pedestal table", gt=0.0)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)

    def __post_init__(self) -> None:
        if self.baseline not in BASELINE_MODES:
            raise ValueError(f"baseline must be one of {sorted(BASELINE_MODES)}")
        if self.cm_method not in CM_METHODS:
            raise ValueError(f"cm_method must be one of {sorted(CM_METHODS)}")
        b0, b1 = self.window
        if not 0 <= b0 < b1 <= 512:
            bad = list(self.window)
            raise ConfigError(f"must satisfy 0 <= b0 < b1 <= 512, got {bad}", "window")
        if self.n_min < 1 or self.max_gap < 0 or not 0.0 <= self.alpha <= 1.0:
            raise ValueError("need n_min >= 1, max_gap >= 0 and 0 <= alpha <= 1")

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "processing"
    ) -> ProcessorConfig:
        """From a TOML file, TOML text or a parsed dict; ConfigError naming file and key."""
        return load(cls, source, table)


@dataclass
class Processed:
    """Output of :meth:`Processor.process` for a batch of n events (per-strip arrays are (n, S))."""

    features: np.ndarray  # FEATURES_DTYPE (n,)
    hit: np.ndarray  # bool
    amplitude: np.ndarray  # float32, ADC
    peak_bin: np.ndarray  # int16, -1 when not a candidate
    integral: np.ndarray  # float32
    width: np.ndarray  # int16, bins
    waveforms: np.ndarray | None = None  # float32 (n, S, T) corrected, when asked for


@njit(cache=True, nogil=True)
def _any_above(row, cm_row, off, thr):
    """Whether any (row - cm_row) - off > thr: an OR reduction vectorises, a max does not."""
    k = False
    for t in range(row.shape[0]):
        k |= (row[t] - cm_row[t]) - off > thr
    return k


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _window_mean_minus(row, cm_row, b0, b1):
    """Mean of row[b0:b1] - cm_row[b0:b1] (float64 accumulation, any order)."""
    acc = 0.0
    for t in range(b0, b1):
        acc += row[t] - cm_row[t]
    return acc / (b1 - b0)


@njit(cache=True, nogil=True)
def _fpn_baselines(fpn_e, mode, fpn_ped, fpn_state, b0, b1, fbase):
    """This event's FPN baselines (C, K); a NaN running state starts here."""
    n_c, n_k = fbase.shape
    for c in range(n_c):
        for k in range(n_k):
            if mode == BASELINE_TABLE:
                fbase[c, k] = fpn_ped[c, k]
            elif mode == BASELINE_EVENT:
                fbase[c, k] = row_window_mean(fpn_e[c, k], b0, b1)
            else:
                if np.isnan(fpn_state[c, k]):
                    fpn_state[c, k] = row_window_mean(fpn_e[c, k], b0, b1)
                fbase[c, k] = fpn_state[c, k]


@njit(cache=True, nogil=True)
def _strip_baseline(raw, s, mode, ped, use_cells, state, b0, b1):
    """Baseline of strip s in this event (0 with per-cell pedestals); NaN running states start."""
    if mode == BASELINE_TABLE:
        return np.float32(0.0) if use_cells else ped[s]
    if mode == BASELINE_EVENT:
        return np.float32(row_window_mean(raw[s], b0, b1))
    if np.isnan(state[s]):
        state[s] = row_window_mean(raw[s], b0, b1)
    return np.float32(state[s])


@njit(cache=True, nogil=True)
def _quiet_estimate(
    raw, complete_e, base, cells, use_cells, chip, quiet_lim, cm_method, x_e, cm, ok
):
    """Pedestal-subtracted copy x_e, then the quiet-strip common mode of the chips still without
    an estimate (all chips unless FPN). Quiet = complete row with max |x| < quiet_lim."""
    n_s, n_t = x_e.shape
    quiet = np.empty(n_s, np.bool_)
    for s in range(n_s):
        hi = np.float32(0.0)
        for t in range(n_t):
            v = raw[s, t] - (cells[s, t] if use_cells else base[s])
            x_e[s, t] = v
            hi = max(hi, abs(v))
        quiet[s] = complete_e[s] and hi < quiet_lim[s]
    if cm_method != CM_NONE:
        quiet_common_mode_event(
            x_e, chip, quiet, cm_method == CM_MEDIAN, cm, ok, cm_method == CM_FPN
        )


@njit(cache=True, nogil=True)
def process_events(
    strips, complete, fpn, fpn_ok, chip, ped, cells, fpn_ped, state, fpn_state,
    mode, cm_method, b0, b1, alpha, quiet_lim, thr_hit, thr_sample, n_min,
    amp, tbin, integral, width, hit, wf_out, write_wf,
):  # fmt: skip
    """Fused chain over a batch, event by event (see Processor).

    ``cells`` (S, T) replaces ``ped`` when its first dimension is S (table mode). Only complete
    rows get the common mode subtracted. ``state`` / ``fpn_state`` (float64) are updated in running
    mode from complete, hit-free strips whose window mean is within ``quiet_lim`` of the state.
    Outputs (n, S): amp, tbin, integral, width, hit; corrected waveforms if ``write_wf``.
    Each strip row is read in one sweep (window, then the whole row) to keep memory access linear.
    """
    n, n_s, n_t = strips.shape
    n_c, n_k = fpn_ped.shape
    use_cells = mode == BASELINE_TABLE and cells.shape[0] == n_s
    base = np.empty(n_s, np.float32)
    fbase = np.empty((n_c, n_k), np.float32)
    cm = np.zeros((n_c, n_t), np.float32)
    no_cm = np.zeros(n_t, np.float32)
    ok = np.zeros(n_c, np.bool_)
    x_e = np.empty((n_s, n_t), np.float32)
    buf = np.empty(n_t, np.float32)
    for e in range(n):
        raw = strips[e]
        _fpn_baselines(fpn[e], mode, fpn_ped, fpn_state, b0, b1, fbase)
        ok[:] = False
        if cm_method == CM_FPN:
            fpn_common_mode_event(fpn[e], fpn_ok[e], fbase, cm, ok)
        materialised = use_cells or cm_method in (CM_MEDIAN, CM_MEAN)
        if cm_method == CM_FPN and not ok.all():
            materialised = True
        if materialised:
            for s in range(n_s):
                base[s] = _strip_baseline(raw, s, mode, ped, use_cells, state, b0, b1)
            _quiet_estimate(raw, complete[e], base, cells, use_cells, chip, quiet_lim, cm_method,
                            x_e, cm, ok)  # fmt: skip
        for c in range(n_c):
            if not ok[c]:
                cm[c, :] = 0.0
        for s in range(n_s):
            if not materialised:
                base[s] = _strip_baseline(raw, s, mode, ped, use_cells, state, b0, b1)
            row = x_e[s] if materialised else raw[s]
            off = np.float32(0.0) if materialised else base[s]
            cm_row = cm[chip[s]] if complete[e, s] else no_cm
            if write_wf or _any_above(row, cm_row, off, thr_hit[s]):
                out = wf_out[e, s] if write_wf else buf
                for t in range(n_t):
                    out[t] = row[t] - cm_row[t] - off
                a, tb, q, w, h = row_pulse(out, thr_hit[s], thr_sample[s], n_min)
            else:
                a, tb, q, w, h = np.float32(0.0), -1, np.float32(0.0), 0, False
            amp[e, s] = a
            tbin[e, s] = tb
            integral[e, s] = q
            width[e, s] = w
            hit[e, s] = h
            if mode == BASELINE_RUNNING and complete[e, s] and not h:
                m = _window_mean_minus(raw[s], cm_row, b0, b1)
                if abs(m - state[s]) < quiet_lim[s]:
                    state[s] += alpha * (m - state[s])
        if mode == BASELINE_RUNNING:
            for c in range(n_c):
                for k in range(n_k):
                    if fpn_ok[e, c, k]:
                        m = row_window_mean(fpn[e, c, k], b0, b1)
                        fpn_state[c, k] += alpha * (m - fpn_state[c, k])


class Processor:
    """Online processing of batches of dense events for one detector layout."""

    def __init__(
        self,
        layout: StripLayout,
        config: ProcessorConfig | None = None,
        pedestals: PedestalTable | None = None,
    ) -> None:
        self.layout = layout
        self.config = config or ProcessorConfig()
        self.chip = np.ascontiguousarray(layout.chip, dtype=np.int64)
        self.n_chips = layout.n_chips
        self.order = axis_order(layout.axis, layout.strip)
        self.strip = np.ascontiguousarray(layout.strip, dtype=np.int64)
        self.pos = np.ascontiguousarray(layout.position_mm, dtype=np.float64)
        self.set_pedestals(pedestals)

    @property
    def n_strips(self) -> int:
        return int(self.chip.shape[0])

    def set_pedestals(self, table: PedestalTable | None) -> None:
        """Use a pedestal table (None: flat defaults) and restart the running baselines from it."""
        cfg = self.config
        self.table = table or PedestalTable.flat(
            self.n_strips, cfg.default_pedestal, cfg.default_noise, self.n_chips
        )
        t = self.table
        if t.mean.shape != (self.n_strips,) or t.fpn_mean.shape != (self.n_chips, 4):
            raise ValueError(
                f"pedestal table is not for {self.n_strips} strips and {self.n_chips}x4 FPN"
            )
        self.ped = np.ascontiguousarray(t.mean, np.float32)
        self.fpn_ped = np.ascontiguousarray(t.fpn_mean, np.float32)
        bad = t.dead | t.noisy
        self.thr_hit = np.where(bad, np.inf, cfg.k_hit * t.noise).astype(np.float32)
        self.thr_sample = (cfg.k_sample * t.noise).astype(np.float32)
        self.quiet_lim = np.where(bad, 0.0, cfg.quiet_k * t.sigma).astype(np.float32)
        use_cells = cfg.per_cell and t.cell_mean is not None and cfg.baseline == "table"
        self.cells = (
            np.ascontiguousarray(t.cell_mean, np.float32) if use_cells
            else np.zeros((1, 1), np.float32)
        )  # fmt: skip
        self.reset()

    def reset(self) -> None:
        """Restart the running baselines from the pedestal table."""
        self.state = self.ped.astype(np.float64)
        self.fpn_state = self.fpn_ped.astype(np.float64)

    def fill_values(self) -> tuple[np.ndarray, np.ndarray]:
        """Values for samples missing from the readout: the current baselines (float32)."""
        if self.config.baseline == "running":
            return self.state.astype(np.float32), self.fpn_state.astype(np.float32)
        return self.ped.copy(), self.fpn_ped.copy()

    def process_flat(self, flat: FlatBatch, events: np.ndarray | None = None) -> Processed:
        """Scatter a flat batch (filling missing samples with the baselines) and process it."""
        fill, fpn_fill = self.fill_values()
        return self.process_dense(scatter(flat, self.layout, fill, fpn_fill), events)

    def process_dense(self, dense: DenseBatch, events: np.ndarray | None = None) -> Processed:
        """Process a scattered batch (only complete rows are common-mode corrected)."""
        return self.process(dense.strips, dense.fpn, dense.fpn_complete, dense.complete, events)

    def process(
        self,
        strips: np.ndarray,
        fpn: np.ndarray | None = None,
        fpn_complete: np.ndarray | None = None,
        complete: np.ndarray | None = None,
        events: np.ndarray | None = None,
        keep_waveforms: bool = False,
    ) -> Processed:
        """Process raw strips (n, S, T) and FPN (n, C, 4, T) (float32 ADC; see :class:`Processed`).

        ``fpn_complete`` (n, C, 4) marks the usable FPN rows (default: all when fpn is given);
        ``complete`` (n, S) the strips read with all their samples (default: all). ``events``
        fills the "event" feature (default: 0..n-1).
        """
        cfg = self.config
        if strips.ndim != 3 or strips.shape[1] != self.n_strips:
            raise ValueError(f"strips must be (n, {self.n_strips}, T), got {strips.shape}")
        strips = np.ascontiguousarray(strips, dtype=np.float32)
        n, n_s, n_t = strips.shape
        if fpn is None:
            fpn = np.zeros((n, self.n_chips, 4, n_t), np.float32)
            fpn_complete = np.zeros((n, self.n_chips, 4), np.bool_)
        fpn = np.ascontiguousarray(fpn, dtype=np.float32)
        if fpn.shape != (n, self.n_chips, 4, n_t):
            raise ValueError(f"fpn must be ({n}, {self.n_chips}, 4, {n_t}), got {fpn.shape}")
        fpn_complete = _mask(fpn_complete, fpn.shape[:3], "fpn_complete")
        complete = _mask(complete, (n, n_s), "complete")
        amp = np.empty((n, n_s), np.float32)
        tbin = np.empty((n, n_s), np.int16)
        integral = np.empty((n, n_s), np.float32)
        width = np.empty((n, n_s), np.int16)
        hit = np.empty((n, n_s), np.bool_)
        wf = np.empty((n, n_s, n_t) if keep_waveforms else (1, 1, 1), np.float32)
        process_events(
            strips, complete, fpn, fpn_complete, self.chip, self.ped, self.cells,
            self.fpn_ped, self.state, self.fpn_state, BASELINE_MODES[cfg.baseline],
            CM_METHODS[cfg.cm_method], cfg.window[0], cfg.window[1], cfg.alpha, self.quiet_lim,
            self.thr_hit, self.thr_sample, cfg.n_min, amp, tbin, integral, width, hit, wf,
            keep_waveforms,
        )  # fmt: skip
        feats = np.zeros(n, FEATURES_DTYPE)
        feats["event"] = np.arange(n) if events is None else events
        event_features(amp, tbin, width, hit, self.order, self.strip, self.pos, cfg.max_gap, feats)
        feats["cls"] = classify(feats, cfg.selection)
        feats["trig"] = trigger(feats, cfg.trigger)
        return Processed(feats, hit, amp, tbin, integral, width, wf if keep_waveforms else None)


def _mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A C-contiguous bool mask of the given shape (all True when None)."""
    if mask is None:
        return np.ones(shape, np.bool_)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {mask.shape}")
    return mask
