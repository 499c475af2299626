"""Rows of the run file's event table and the selection of stored channel waveforms.

The row types are :mod:`agetdaq.readout.schema`'s; the features come from the processing, whose
record carries exactly the schema's feature columns (``tests/test_schema.py``).
"""

from __future__ import annotations

import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.readout.datapath.build import BuiltBatch, _ranges
from agetdaq.readout.schema import AUX_DTYPE, CHANNEL_DTYPE, FEATURE_NAMES, NOT_PROCESSED
from agetdaq.readout.store.records import header_rows


def event_rows(built: BuiltBatch, features: np.ndarray | None, time_ns: int) -> np.ndarray:
    """The event-table rows of a built batch (features zero where not processed)."""
    rows = header_rows(built.decoded, built.event_id, built.build_flags, time_ns)
    if features is not None:
        for name in FEATURE_NAMES:
            rows[name] = features[name]
    else:
        rows["build_flags"] |= NOT_PROCESSED
    return rows


def stored_channels(
    built: BuiltBatch,
    lut: np.ndarray,
    mode: str,
    trig: np.ndarray | None,
    hit: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Channel rows, sample bins and ADC to store, and the aux rows, for one built batch.

    ``mode``: ``all`` every channel; ``events`` every channel of triggered events; ``hits`` the
    channels of hit strips of triggered events; ``none`` nothing. Without processing results
    (``trig`` None) ``events`` and ``hits`` keep everything, so nothing is lost unseen.
    """
    b = built.decoded
    n_ch = b.channels_table.shape[0]
    owner = np.repeat(np.arange(len(built)), b.n_channels)
    strip = lut[b.card, b.chip, np.minimum(b.channel, lut.shape[2] - 1)].astype(np.int16)
    if mode == "none":
        keep = np.zeros(n_ch, dtype=bool)
    elif mode == "all" or trig is None:
        keep = np.ones(n_ch, dtype=bool)
    elif mode == "events":
        keep = trig[owner]
    else:
        is_strip = strip >= 0
        keep = trig[owner] & is_strip
        keep[is_strip] &= hit[owner[is_strip], strip[is_strip]]
    idx = np.flatnonzero(keep)
    n_s = b.n_samples[idx].astype(np.int64)
    starts = b.sample_start[idx].astype(np.int64)
    first = int(starts[0]) if len(idx) else 0
    if len(idx) and np.array_equal(starts[1:], starts[:-1] + n_s[:-1]):
        s_idx = slice(first, first + int(n_s.sum()))  # back to back (mode "all"): no gather
    else:
        s_idx = _ranges(starts, n_s)
    ch = np.zeros(len(idx), CHANNEL_DTYPE)
    ch["event_row"] = owner[idx]
    ch["card"] = b.card[idx]
    ch["chip"] = b.chip[idx]
    ch["channel"] = b.channel[idx]
    ch["strip"] = strip[idx]
    ch["sample_start"] = np.cumsum(n_s) - n_s
    ch["n_samples"] = n_s
    return ch, b.time_bin[s_idx], b.adc[s_idx], aux_rows(built)


def aux_rows(built: BuiltBatch) -> np.ndarray:
    """The aux rows (hit counts, last cells read) of a built batch."""
    b = built.decoded
    aux_t = b.aux_table
    aux = np.zeros(aux_t.shape[0], AUX_DTYPE)
    if len(aux):
        aux["event_row"] = np.repeat(np.arange(len(built)), b.events_table[:, dk.EV_N_AUX])
        aux["kind"] = aux_t[:, dk.AUX_KIND]
        aux["card"] = np.maximum(aux_t[:, dk.AUX_CARD], 0)
        aux["chip"] = aux_t[:, dk.AUX_CHIP]
        aux["value"] = aux_t[:, dk.AUX_VALUE]
    return aux
