"""B1: data-stream decoder throughput (numba kernel via StreamDecoder) on 8 KB datagrams.

(a) full readout: 4 chips x 68 channels x 512 samples per event; (b) zero-suppressed: 10
channels x 40 samples per event. Batches of 128 datagrams (1 MB). Reference: a numpy copy of
the same bytes in the same batches, same run; both timed as the sum of per-batch minima.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agetdaq.protocol.decode import StreamDecoder
from agetdaq.protocol.encode import DataFramer
from agetdaq.protocol.event_block import event_words_bound, write_event_kernel
from agetdaq.protocol.words import lead_word
from benchmarks.common import make_row

ID = "B1"
DATAGRAM_BYTES = 8192
MAX_FRAME_BYTES = DATAGRAM_BYTES - 2  # the lead word completes the datagram
BATCH_DATAGRAMS = 128
TARGET_RATIO = 0.2
TARGET_US_PER_DATAGRAM = 6.0


def _stream(n_events: int, n_chips: int, n_chans: int, n_samples: int, zs: bool, seed: int):
    """Encode synthetic events with the array kernel; return (uint8 rows, lengths)."""
    rng = np.random.default_rng(seed)
    n_ch = n_chips * n_chans
    cards = np.zeros(n_ch, np.int64)
    chips = np.repeat(np.arange(n_chips), n_chans).astype(np.int64)
    chans = np.tile(np.arange(3, 3 + n_chans), n_chips).astype(np.int64)
    offsets = np.arange(n_ch + 1, dtype=np.int64) * n_samples
    none = np.zeros(0, np.int64)
    out = np.empty(event_words_bound(n_ch, n_ch * n_samples, 0, 0), np.uint16)
    framer = DataFramer(max_frame_bytes=MAX_FRAME_BYTES, eof_on_eoe=False)
    frames: list[np.ndarray] = []
    for i in range(n_events):
        if zs:
            starts = rng.integers(0, 512 - n_samples, n_ch)
            bins = (starts[:, None] + np.arange(n_samples)).ravel()
        else:
            bins = np.tile(np.arange(n_samples), n_ch)
        adc = rng.normal(250, 4, n_ch * n_samples).astype(np.int64).clip(0, 4095)
        n = write_event_kernel(
            out, 0, 0, 1000 * i, i, none, none, cards, chips, chans, offsets, bins, adc,
            none, none, none, zs, -1,
        )  # fmt: skip
        frames.extend(framer.add(out[:n]))
    frames.extend(framer.flush())
    rows = np.zeros((len(frames), DATAGRAM_BYTES // 2), np.uint16)
    lengths = np.empty(len(frames), np.int64)
    for k, f in enumerate(frames):
        rows[k, 0] = lead_word(k, first=k == 0)
        rows[k, 1 : 1 + f.size] = f
        lengths[k] = 2 * (f.size + 1)
    return rows.view(np.uint8), lengths


def _decode_all(dec: StreamDecoder, buf: np.ndarray, lengths: np.ndarray) -> int:
    n = 0
    for s in range(0, buf.shape[0], BATCH_DATAGRAMS):
        n += len(dec.decode(buf[s : s + BATCH_DATAGRAMS], lengths[s : s + BATCH_DATAGRAMS]))
    return n + len(dec.flush())


def _min_per_batch(step: Callable[[int], object], n_rows: int, seconds: float) -> float:
    """Whole-stream time as the sum over batches of each batch's fastest run.

    Every pass repeats the same work batch by batch (the decoder is flushed after each pass),
    so the per-batch minimum is the time on an undisturbed core; ~1 ms batches are far more
    likely to run uninterrupted on a shared machine than a whole pass.
    """
    starts = range(0, n_rows, BATCH_DATAGRAMS)
    best = np.full(len(starts), np.inf)
    t_end = time.perf_counter() + seconds
    passes = 0
    while passes < 3 or time.perf_counter() < t_end:
        for k, s in enumerate(starts):
            t0 = time.perf_counter()
            step(s)
            best[k] = min(best[k], time.perf_counter() - t0)
        passes += 1
    return float(best.sum())


def _case(label: str, buf: np.ndarray, lengths: np.ndarray, n_events: int, seconds: float):
    dec = StreamDecoder()  # batches are dropped at once, so its output buffers are recycled
    got = _decode_all(dec, buf, lengths)  # warm-up (numba compile / cache load, buffers)
    bad = {k: v for k, v in dec.error_counts().items() if v}
    if got != n_events or bad:
        raise RuntimeError(f"{label}: decoded {got}/{n_events} events, errors {bad}")
    n_dg = buf.shape[0]

    def decode_step(s: int) -> None:
        dec.decode(buf[s : s + BATCH_DATAGRAMS], lengths[s : s + BATCH_DATAGRAMS])
        if s + BATCH_DATAGRAMS >= n_dg:
            dec.flush()

    dst = np.empty_like(buf)

    def copy_step(s: int) -> None:
        np.copyto(dst[s : s + BATCH_DATAGRAMS], buf[s : s + BATCH_DATAGRAMS])

    t_dec = _min_per_batch(decode_step, n_dg, seconds)
    t_copy = _min_per_batch(copy_step, n_dg, seconds / 2)
    if dec.errors.any():
        raise RuntimeError(f"{label}: errors while timing {dec.error_counts()}")
    mb = buf.nbytes / 1e6
    n_dg = buf.shape[0]
    rows = [
        make_row(ID, f"decode {label}", mb / t_dec, "MB/s", reference=mb / t_copy,
                 ref_unit="MB/s (numpy copy)", target=TARGET_RATIO),
        make_row(ID, f"decode {label} per 8 KB datagram", 1e6 * t_dec / n_dg, "us",
                 target=TARGET_US_PER_DATAGRAM, target_on="value", higher_is_better=False),
        make_row(ID, f"decode {label} events/s", n_events / t_dec, "events/s"),
    ]  # fmt: skip
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    # same data in quick mode (a smaller stream would sit in cache and flatter the copy)
    n_full, n_zs, seconds = 200, 20000, (0.3 if quick else 2.0)
    rows: list[dict[str, Any]] = []
    buf, lengths = _stream(n_full, 4, 68, 512, zs=False, seed=1)
    rows += _case(f"full {n_full} ev 4x68x512", buf, lengths, n_full, seconds)
    buf, lengths = _stream(n_zs, 1, 10, 40, zs=True, seed=2)
    rows += _case(f"ZS {n_zs} ev 10x40", buf, lengths, n_zs, seconds)
    return rows
