"""Scatter decoded channel samples into dense per-strip waveforms.

Input ("flat batch", the layout of ``agetdaq.protocol.decode.DecodedBatch``): one row per decoded
channel,

- per event: ``chan_start``, ``n_chan`` (n_events,): its rows are chan_start:chan_start+n_chan;
- per row: ``card``, ``chip``, ``channel`` (DAQ index 0..78), ``sample_start``, ``n_samples``;
- per sample: ``bins`` (time bin 0..511) and ``adc`` (raw ADC).

Output, float32: strips (n_events, 240, 512) in global strip order (X0..X119, Y0..Y119) and FPN
(n_events, 4 chips, 4, 512), with masks (n_events, 240) / (n_events, 4, 4): ``present`` (the
channel was sent) and ``complete`` (it was sent with all 512 bins in order, i.e. no zero
suppression).

Missing samples (zero suppression, or a channel not sent at all) are filled with a per-strip
*fill value*, normally the current pedestal/baseline: after pedestal subtraction they read 0, so
they never make hits. The common mode cannot be known at a missing sample, so the pipeline
estimates the common mode only from complete rows, corrects complete rows and the samples that
were sent of zero-suppressed rows (``zs_slot`` / ``zs_mask``: which bins a strip row that is not
complete was sent with), and updates running baselines only from complete rows. A channel
repeated in one event adds its samples to the first row's (counted). Rows that are neither a
strip nor an FPN channel (reset, unconnected channels) and bins > 511 are skipped and counted.
The FPN array is indexed by chip number only: one back-end card per detector (PROTOCOL.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from agetdaq.protocol.channels import fpn_indices

N_STRIPS = 240
N_SAMPLES = 512
N_CHIPS = 4
N_FPN = 4
N_CARDS = 32
N_INDICES = 79


@dataclass(frozen=True)
class StripLayout:
    """Per-strip geometry the kernels need, in global strip order (X0..X119 then Y0..Y119)."""

    chip: np.ndarray  # int64 (240,) chip 0..3 of each strip (common-mode group)
    axis: np.ndarray  # int64 (240,) 0 = X, 1 = Y
    strip: np.ndarray  # int64 (240,) strip number along its axis
    position_mm: np.ndarray  # float64 (240,) strip centre along its axis
    lut: np.ndarray  # int16 (32, 4, 79) DAQ address -> global strip or -1
    fpn_lut: np.ndarray  # int16 (32, 4, 79) DAQ address -> FPN slot 0..3 or -1

    @classmethod
    def from_mapping(cls, mapping: object, rst_len: int = 0) -> StripLayout:
        """Build from a ``agetdaq.protocol.mapping.StripMapping`` (duck-typed)."""
        m = mapping
        card = np.asarray(m.card, dtype=np.int64)
        return cls(
            chip=np.asarray(m.chip, dtype=np.int64),
            axis=np.asarray(m.axis, dtype=np.int64),
            strip=np.asarray(m.strip, dtype=np.int64),
            position_mm=np.asarray(m.position_mm, dtype=np.float64),
            lut=np.asarray(m.lut(rst_len), dtype=np.int16),
            fpn_lut=build_fpn_lut(np.unique(card), rst_len),
        )

    @classmethod
    def default(cls, rst_len: int = 0) -> StripLayout:
        """Layout of the project's default mapping (``StripMapping.default()``)."""
        from agetdaq.protocol.mapping import StripMapping

        return cls.from_mapping(StripMapping.default(), rst_len)

    @property
    def n_strips(self) -> int:
        return int(self.chip.shape[0])

    @property
    def n_chips(self) -> int:
        """Chips of a card (common-mode groups; the FPN arrays are indexed by chip number)."""
        return int(self.fpn_lut.shape[1])


def build_fpn_lut(cards: np.ndarray, rst_len: int = 0) -> np.ndarray:
    """int16 (32, 4, 79): FPN slot 0..3 of the FPN DAQ indices of the given cards, else -1."""
    lut = np.full((N_CARDS, N_CHIPS, N_INDICES), -1, dtype=np.int16)
    for card in np.asarray(cards, dtype=np.int64):
        for slot, ix in enumerate(fpn_indices(rst_len)):
            lut[card, :, ix] = slot
    return lut


@dataclass
class FlatBatch:
    """Decoded channel rows of a batch of events (see the module docstring)."""

    chan_start: np.ndarray
    n_chan: np.ndarray
    card: np.ndarray
    chip: np.ndarray
    channel: np.ndarray
    sample_start: np.ndarray
    n_samples: np.ndarray
    bins: np.ndarray
    adc: np.ndarray

    @property
    def n_events(self) -> int:
        return int(self.chan_start.shape[0])

    @classmethod
    def from_decoded(cls, batch: object) -> FlatBatch:
        """Views on a ``agetdaq.protocol.decode.DecodedBatch`` (duck-typed)."""
        b = batch
        return cls(
            b.channel_start, b.n_channels, b.card, b.chip, b.channel, b.sample_start,
            b.n_samples, b.time_bin, b.adc,
        )  # fmt: skip

    def validate(self) -> None:
        """Raise ValueError on inconsistent lengths or rows / samples out of bounds."""
        n_rows = self.card.shape[0]
        if self.n_chan.shape != self.chan_start.shape or self.chan_start.ndim != 1:
            raise ValueError("chan_start and n_chan must be 1-D of the same length")
        row_cols = (self.chip, self.channel, self.sample_start, self.n_samples)
        if any(c.shape != (n_rows,) for c in row_cols):
            raise ValueError("card, chip, channel, sample_start, n_samples: one entry per row")
        if self.bins.shape != self.adc.shape:
            raise ValueError("bins and adc must have the same length")
        for name, start, count, end in (
            ("channel rows", self.chan_start, self.n_chan, n_rows),
            ("samples", self.sample_start, self.n_samples, self.bins.shape[0]),
        ):
            if start.size and (start.min() < 0 or count.min() < 0 or (start + count).max() > end):
                raise ValueError(f"{name} out of bounds (0..{end})")


def flatten_events(events: list) -> FlatBatch:
    """Flat arrays from a list of ``agetdaq.protocol.event.Event`` (for tests and file replay)."""
    rows = [ch for ev in events for ch in ev.channels]
    n_chan = np.array([len(ev.channels) for ev in events], dtype=np.int64)
    n_samp = np.array([len(ch.bins) for ch in rows], dtype=np.int64)
    empty = [np.zeros(0, np.uint16)]
    return FlatBatch(
        chan_start=np.cumsum(n_chan) - n_chan,
        n_chan=n_chan,
        card=np.array([ch.card for ch in rows], dtype=np.int64),
        chip=np.array([ch.chip for ch in rows], dtype=np.int64),
        channel=np.array([ch.channel for ch in rows], dtype=np.int64),
        sample_start=np.cumsum(n_samp) - n_samp,
        n_samples=n_samp,
        bins=np.concatenate([np.asarray(ch.bins, np.uint16) for ch in rows] + empty),
        adc=np.concatenate([np.asarray(ch.adc, np.uint16) for ch in rows] + empty),
    )


@njit(cache=True, nogil=True)
def _put_row(dst, fill, bins, adc, lo, hi, fresh):
    """Write samples lo:hi into dst (512,), first filling it when ``fresh`` (a repeated row adds
    its samples to the first one's); returns (out-of-range bins, all 512 bins in order)."""
    if hi - lo == N_SAMPLES:
        in_order = True
        for t in range(N_SAMPLES):
            dst[t] = adc[lo + t]
            in_order &= bins[lo + t] == t
        if in_order:
            return 0, True
    if fresh:
        dst[:] = fill
    bad = 0
    for i in range(lo, hi):
        b = bins[i]
        if b < N_SAMPLES:
            dst[b] = adc[i]
        else:
            bad += 1
    return bad, False


@njit(cache=True, nogil=True)
def partial_rows(n_samples, sample_start, bins):
    """Rows that are not all 512 bins in order (a bound on the zero-suppressed strip rows)."""
    m = 0
    for r in range(n_samples.shape[0]):
        lo, n = sample_start[r], n_samples[r]
        full = n == N_SAMPLES
        if full:
            for t in range(N_SAMPLES):
                full &= bins[lo + t] == t
        m += not full
    return m


@njit(cache=True, nogil=True)
def scatter_batch(
    chan_start, n_chan, card, chip, channel, sample_start, n_samples, bins, adc,
    lut, fpn_lut, fill, fpn_fill, out, fpn_out, present, fpn_present, complete, fpn_complete,
    zs_slot, zs_mask,
):  # fmt: skip
    """Scatter a flat batch into ``out`` (n, 240, 512) and ``fpn_out`` (n, 4, 4, 512).

    ``fill`` (240,) / ``fpn_fill`` (4, 4) fill missing samples. A strip row that is not complete
    gets a slot ``zs_slot`` (n, 240) (else -1) in ``zs_mask`` (rows >= :func:`partial_rows`,
    512): the bins it was sent with. Returns int64 counters [ignored rows (neither strip nor FPN),
    out-of-range samples, duplicate rows].
    """
    counters = np.zeros(3, dtype=np.int64)
    n_zs = 0
    for e in range(chan_start.shape[0]):
        zs_slot[e, :] = -1
        present[e, :] = False
        fpn_present[e, :, :] = False
        complete[e, :] = False
        fpn_complete[e, :, :] = False
        for r in range(chan_start[e], chan_start[e] + n_chan[e]):
            ca, ch, ix, lo = card[r], chip[r], channel[r], sample_start[r]
            if ca < 0 or ca >= N_CARDS or ch < 0 or ch >= N_CHIPS or ix < 0 or ix >= N_INDICES:
                counters[0] += 1
                continue
            s = lut[ca, ch, ix]
            if s >= 0:
                dup = present[e, s]
                counters[2] += dup
                present[e, s] = True
                bad, full = _put_row(out[e, s], fill[s], bins, adc, lo, lo + n_samples[r], not dup)
                counters[1] += bad
                complete[e, s] |= full
                if not full:
                    if zs_slot[e, s] < 0:
                        zs_slot[e, s] = n_zs
                        zs_mask[n_zs, :] = False
                        n_zs += 1
                    for i in range(lo, lo + n_samples[r]):
                        if bins[i] < N_SAMPLES:
                            zs_mask[zs_slot[e, s], bins[i]] = True
                continue
            k = fpn_lut[ca, ch, ix]
            if k >= 0:
                dup = fpn_present[e, ch, k]
                counters[2] += dup
                fpn_present[e, ch, k] = True
                bad, full = _put_row(
                    fpn_out[e, ch, k], fpn_fill[ch, k], bins, adc, lo, lo + n_samples[r], not dup
                )
                counters[1] += bad
                fpn_complete[e, ch, k] |= full
                continue
            counters[0] += 1
        for s in range(out.shape[1]):
            if not present[e, s]:
                out[e, s, :] = fill[s]
        for ch in range(N_CHIPS):
            for k in range(N_FPN):
                if not fpn_present[e, ch, k]:
                    fpn_out[e, ch, k, :] = fpn_fill[ch, k]
    return counters


@dataclass
class DenseBatch:
    """Dense waveforms of a batch of events, ready for the processing kernels."""

    strips: np.ndarray  # float32 (n, 240, 512) raw ADC
    fpn: np.ndarray  # float32 (n, 4, 4, 512) raw ADC of the FPN channels
    present: np.ndarray  # bool (n, 240) strip sent in this event
    fpn_present: np.ndarray  # bool (n, 4, 4)
    complete: np.ndarray  # bool (n, 240) strip sent with all 512 bins
    fpn_complete: np.ndarray  # bool (n, 4, 4)
    zs_slot: np.ndarray  # int64 (n, 240) row of zs_mask of a strip sent not complete, else -1
    zs_mask: np.ndarray  # bool (m, 512) the bins such a strip was sent with
    ignored_rows: int = 0
    bad_bins: int = 0
    duplicate_rows: int = 0

    @classmethod
    def empty(cls, n_events: int, n_strips: int = N_STRIPS, n_chips: int = N_CHIPS) -> DenseBatch:
        return cls(
            strips=np.empty((n_events, n_strips, N_SAMPLES), np.float32),
            fpn=np.empty((n_events, n_chips, N_FPN, N_SAMPLES), np.float32),
            present=np.zeros((n_events, n_strips), np.bool_),
            fpn_present=np.zeros((n_events, n_chips, N_FPN), np.bool_),
            complete=np.zeros((n_events, n_strips), np.bool_),
            fpn_complete=np.zeros((n_events, n_chips, N_FPN), np.bool_),
            zs_slot=np.full((n_events, n_strips), -1, np.int64),
            zs_mask=np.zeros((0, N_SAMPLES), np.bool_),
        )

    def sampled(self) -> np.ndarray:
        """bool (n, S, 512): the bins each zero-suppressed strip row was sent with (False
        elsewhere, complete rows included)."""
        out = np.zeros(self.strips.shape, np.bool_)
        has = (self.zs_slot >= 0) & ~self.complete
        out[has] = self.zs_mask[self.zs_slot[has]]
        return out


def scatter(
    flat: FlatBatch,
    layout: StripLayout,
    fill: np.ndarray | float = 250.0,
    fpn_fill: np.ndarray | float = 250.0,
    out: DenseBatch | None = None,
) -> DenseBatch:
    """Dense waveforms of a flat batch; ``fill`` is the per-strip value of missing samples."""
    flat.validate()
    n = flat.n_events
    shape = (n, layout.n_strips, N_SAMPLES)
    if out is not None and out.strips.shape == shape:
        dense = out
    else:
        dense = DenseBatch.empty(n, layout.n_strips, layout.n_chips)
    fill_a = np.broadcast_to(np.asarray(fill, np.float32), (dense.strips.shape[1],))
    fpn_fill_a = np.broadcast_to(np.asarray(fpn_fill, np.float32), dense.fpn.shape[1:3])
    m = partial_rows(flat.n_samples, flat.sample_start, flat.bins)
    if dense.zs_mask.shape[0] < m:
        dense.zs_mask = np.zeros((m, N_SAMPLES), np.bool_)
    counters = scatter_batch(
        flat.chan_start, flat.n_chan, flat.card, flat.chip, flat.channel, flat.sample_start,
        flat.n_samples, flat.bins, flat.adc, layout.lut, layout.fpn_lut,
        np.ascontiguousarray(fill_a), np.ascontiguousarray(fpn_fill_a), dense.strips, dense.fpn,
        dense.present, dense.fpn_present, dense.complete, dense.fpn_complete, dense.zs_slot,
        dense.zs_mask,
    )  # fmt: skip
    dense.ignored_rows, dense.bad_bins, dense.duplicate_rows = (int(c) for c in counters)
    return dense
