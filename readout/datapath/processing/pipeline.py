"""The online processing chain for a batch of events: baseline -> common mode -> hits -> features
-> classification -> software trigger.

:class:`Processor` keeps the configuration and the state (running baselines) and calls one fused
numba kernel that walks the batch event by event: :func:`~.dense.process_events` over dense
waveforms (n, strips, 512), or :func:`~.sparse.sparse_events` over the flat channel rows of
zero-suppressed events (the same results, on the samples that exist); both are built from the
per-row / per-event kernels of the other modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.config import ConfigError, load, setting
from agetdaq.readout.datapath.processing.baseline import BASELINE_MODES
from agetdaq.readout.datapath.processing.commonmode import CM_METHODS
from agetdaq.readout.datapath.processing.dense import process_events
from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE, axis_order, event_features
from agetdaq.readout.datapath.processing.pedestal import DEFAULT_WINDOW, PedestalTable
from agetdaq.readout.datapath.processing.sparse import sparse_check, sparse_events
from agetdaq.readout.datapath.processing.sparse_waveforms import SparseWaveforms
from agetdaq.readout.datapath.processing.trigger import (
    SelectionConfig,
    TriggerConfig,
    classify_trigger,
    selection_params,
)
from agetdaq.readout.datapath.processing.waveforms import (
    N_SAMPLES,
    DenseBatch,
    FlatBatch,
    StripLayout,
    scatter,
)


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
    cm_zero_suppressed: bool = setting(
        True,
        "fpn: zero-suppressed rows get the common mode of their chip's FPN channels too, when "
        "those were sent whole (card threshold 0); else only complete rows",
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
    waveforms: np.ndarray | SparseWaveforms | None = None  # float32 (n, S, T) corrected, when
    # asked for (a sparse batch lays an event out when it is indexed)


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
        self._selection = (None, selection_params(self.config.selection, self.config.trigger))
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

    def process_dense(
        self, dense: DenseBatch, events: np.ndarray | None = None, keep_waveforms: bool = False
    ) -> Processed:
        """Process a scattered batch (the common mode on complete rows and on the samples sent
        of zero-suppressed ones, ``cm_zero_suppressed``)."""
        return self.process(
            dense.strips, dense.fpn, dense.fpn_complete, dense.complete, events, keep_waveforms,
            (dense.zs_slot, dense.zs_mask),
        )  # fmt: skip

    def process(
        self,
        strips: np.ndarray,
        fpn: np.ndarray | None = None,
        fpn_complete: np.ndarray | None = None,
        complete: np.ndarray | None = None,
        events: np.ndarray | None = None,
        keep_waveforms: bool = False,
        zero_suppressed: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Processed:
        """Process raw strips (n, S, T) and FPN (n, C, 4, T) (float32 ADC; see :class:`Processed`).

        ``fpn_complete`` (n, C, 4) marks the usable FPN rows (default: all when fpn is given);
        ``complete`` (n, S) the strips read with all their samples (default: all);
        ``zero_suppressed`` (``DenseBatch.zs_slot``, ``.zs_mask``) the bins the zero-suppressed
        rows were sent with (default: none; ``cm_zero_suppressed``). ``events`` fills the
        "event" feature (default: 0..n-1).
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
        zs_slot, zs_mask = _zero_suppressed(zero_suppressed, (n, n_s))
        amp = np.empty((n, n_s), np.float32)
        tbin = np.empty((n, n_s), np.int16)
        integral = np.empty((n, n_s), np.float32)
        width = np.empty((n, n_s), np.int16)
        hit = np.empty((n, n_s), np.bool_)
        wf = np.empty((n, n_s, n_t) if keep_waveforms else (1, 1, 1), np.float32)
        process_events(
            strips, complete, zs_slot, zs_mask, fpn, fpn_complete, self.chip, self.ped, self.cells,
            self.fpn_ped, self.state, self.fpn_state, BASELINE_MODES[cfg.baseline],
            CM_METHODS[cfg.cm_method], cfg.cm_zero_suppressed, cfg.window[0], cfg.window[1],
            cfg.alpha, self.quiet_lim,
            self.thr_hit, self.thr_sample, cfg.n_min, amp, tbin, integral, width, hit, wf,
            keep_waveforms,
        )  # fmt: skip
        return self._finish(amp, tbin, integral, width, hit, events, wf if keep_waveforms else None)

    # ---- the sparse path (sparse.py) ---------------------------------------------------------

    def sparse_ready(self) -> bool:
        """Whether the settings and the state allow the sparse path: baselines from the table
        (per strip) or running (and started), not per event nor per cell."""
        cfg = self.config
        if cfg.baseline == "event" or self.cells.shape[0] == self.n_strips:
            return False
        return not (
            cfg.baseline == "running"
            and (np.isnan(self.state).any() or np.isnan(self.fpn_state).any())
        )

    def wants_sparse(self, flat: FlatBatch) -> bool:
        """A zero-suppressed batch (fewer than half of its strip rows carry 512 samples; FPN
        channels sent whole do not count) that the sparse path can take (:meth:`sparse_ready`,
        :func:`sparse_check`)."""
        f = flat
        n_rows = len(f.n_samples)
        if not n_rows:
            return False
        lut = self.layout.lut
        valid = np.ones(n_rows, np.bool_)
        for col, size in zip((f.card, f.chip, f.channel), lut.shape):
            valid &= (col >= 0) & (col < size)
        strip = np.zeros(n_rows, np.bool_)
        strip[valid] = lut[f.card[valid], f.chip[valid], f.channel[valid]] >= 0
        n_strip = np.count_nonzero(strip)
        if n_strip and 2 * np.count_nonzero(f.n_samples[strip] == N_SAMPLES) >= n_strip:
            return False
        if not self.sparse_ready():
            return False
        usable, _, _ = sparse_check(
            f.chan_start, f.n_chan, f.card, f.chip, f.channel, f.sample_start, f.n_samples,
            f.bins, self.layout.lut, self.layout.fpn_lut, self.n_strips,
        )  # fmt: skip
        return bool(usable)

    def process_sparse(
        self, flat: FlatBatch, events: np.ndarray | None = None, keep_waveforms: bool = False
    ) -> tuple[Processed, int, int]:
        """Process a flat batch on its samples (no dense layout): the same results as
        :meth:`process_flat` when :meth:`wants_sparse` (or :func:`sparse_check` and
        :meth:`sparse_ready`) said yes. Returns (processed, ignored rows, bins past the last
        cell); ``processed.waveforms`` lays events out on demand (SparseWaveforms)."""
        cfg = self.config
        f = flat
        n, n_s = f.n_events, self.n_strips
        amp = np.zeros((n, n_s), np.float32)
        tbin = np.full((n, n_s), -1, np.int16)
        integral = np.zeros((n, n_s), np.float32)
        width = np.zeros((n, n_s), np.int16)
        hit = np.zeros((n, n_s), np.bool_)
        corr = np.empty(len(f.adc) if keep_waveforms else 1, np.float32)
        bg = np.empty((n, n_s) if keep_waveforms else (1, 1), np.float32)
        fill, _ = self.fill_values()
        counters = sparse_events(
            f.chan_start, f.n_chan, f.card, f.chip, f.channel, f.sample_start, f.n_samples,
            f.bins, f.adc, self.layout.lut, self.layout.fpn_lut, self.chip, self.ped, fill,
            self.fpn_ped, self.state, self.fpn_state, BASELINE_MODES[cfg.baseline],
            CM_METHODS[cfg.cm_method], cfg.cm_zero_suppressed, cfg.window[0], cfg.window[1],
            cfg.alpha, self.quiet_lim, self.thr_hit, self.thr_sample, cfg.n_min, amp, tbin,
            integral, width, hit, corr, bg, keep_waveforms,
        )  # fmt: skip
        wf = SparseWaveforms(f, self.layout.lut, corr, bg) if keep_waveforms else None
        proc = self._finish(amp, tbin, integral, width, hit, events, wf)
        return proc, int(counters[0]), int(counters[1])

    def _finish(self, amp, tbin, integral, width, hit, events, wf) -> Processed:
        """Features, class and software trigger from the per-strip hit arrays (n, S)."""
        cfg = self.config
        n = amp.shape[0]
        feats = np.zeros(n, FEATURES_DTYPE)
        feats["event"] = np.arange(n) if events is None else events
        event_features(amp, tbin, width, hit, self.order, self.strip, self.pos, cfg.max_gap, feats)
        if self._selection[0] is not cfg:  # the config was replaced
            self._selection = (cfg, selection_params(cfg.selection, cfg.trigger))
        classify_trigger(feats, *self._selection[1])
        return Processed(feats, hit, amp, tbin, integral, width, wf)


def _zero_suppressed(
    zs: tuple[np.ndarray, np.ndarray] | None, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(zs_slot int64 (n, S), zs_mask bool (m, 512)) checked; none when ``zs`` is None."""
    if zs is None:
        return np.full(shape, -1, np.int64), np.zeros((0, N_SAMPLES), np.bool_)
    slot = np.ascontiguousarray(zs[0], dtype=np.int64)
    mask = np.ascontiguousarray(zs[1], dtype=np.bool_)
    if slot.shape != shape or mask.ndim != 2 or mask.shape[1] != N_SAMPLES:
        raise ValueError(f"zero_suppressed must be ({shape} slots, (m, {N_SAMPLES}) mask)")
    if slot.size and slot.max() >= mask.shape[0]:
        raise ValueError("zero_suppressed: a slot past the mask's rows")
    return slot, mask


def _mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A C-contiguous bool mask of the given shape (all True when None)."""
    if mask is None:
        return np.ones(shape, np.bool_)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {mask.shape}")
    return mask
