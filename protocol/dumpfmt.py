"""Events as text for people and as JSON-ready dicts for programs (``agetdaq dump``).

JSON layout of one event (raw ADC exactly as received; time bins as string keys)::

    {"event_id": 0, "event_count": 17, "timestamp": 123456, "type": 0, "source_id": 0,
     "channels": [{"card": 0, "chip": 1, "channel": 20, "strip": "X17",
                   "samples": {"100": 251, "101": 260}}],
     "hit_counts": [[card, chip, count]], "last_cells": [[chip, cell]],
     "errors": {"TRUNCATED": true}}

``event_id`` is the event's position in the file (0-based, what ``--events A:B`` selects);
``event_count`` is the card's own counter; ``timestamp`` is in 20 ns card ticks; ``strip`` is the
strip name from the detector mapping (a run file's own) or null (reset, FPN, unconnected
channels, no mapping); ``errors`` holds the decoder's damage flags of the event by name (empty
when clean).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agetdaq.protocol.event import TICK_NS, Channel, Event, EventFlag
from agetdaq.protocol.mapping import StripMapping

StripNamer = Callable[[int, int, int], "str | None"]
SAMPLES_PER_LINE = 16


def flag_names(flags: int) -> list[str]:
    """Names of the EventFlag bits set in ``flags``, in bit order."""
    return [f.name or str(int(f)) for f in EventFlag if f and int(flags) & int(f)]


def strip_namer(rst_len: int = 0, mapping: StripMapping | None = None) -> StripNamer:
    """(card, chip, DAQ channel) -> strip name with ``mapping`` (default: the BabyIAXO one), or
    always None without one (the default mapping failing to load)."""
    if mapping is None:
        try:
            mapping = StripMapping.default()
        except Exception:  # no mapping: dump still works, strips are null
            return lambda card, chip, chan: None

    def name(card: int, chip: int, chan: int) -> str | None:
        try:
            return mapping.strip_name(card, chip, chan, rst_len=rst_len)
        except (ValueError, KeyError, IndexError):
            return None

    return name


def _no_strip(card: int, chip: int, chan: int) -> None:
    return None


def channel_to_dict(ch: Channel, strip_of: StripNamer = _no_strip) -> dict:
    bins = np.asarray(ch.bins).tolist()
    adc = np.asarray(ch.adc).tolist()
    return {
        "card": int(ch.card),
        "chip": int(ch.chip),
        "channel": int(ch.channel),
        "strip": strip_of(int(ch.card), int(ch.chip), int(ch.channel)),
        "samples": {str(b): a for b, a in zip(bins, adc)},
    }


def event_to_dict(event: Event, event_id: int, strip_of: StripNamer = _no_strip) -> dict:
    """The JSON object of one event (layout in the module docstring)."""
    return {
        "event_id": int(event_id),
        "event_count": int(event.event_count),
        "timestamp": int(event.timestamp),
        "type": int(event.event_type),
        "source_id": int(event.source_id),
        "channels": [channel_to_dict(c, strip_of) for c in event.channels],
        "hit_counts": [[int(x) for x in h] for h in event.hit_counts],
        "last_cells": [[int(x) for x in c] for c in event.last_cells],
        "errors": dict.fromkeys(flag_names(event.flags), True),
    }


def _runs(bins: list[int]) -> list[tuple[int, int]]:
    """(start index, stop index) of runs of consecutive time bins."""
    runs, start = [], 0
    for i in range(1, len(bins) + 1):
        if i == len(bins) or bins[i] != bins[i - 1] + 1:
            runs.append((start, i))
            start = i
    return runs


def _format_time(ticks: int) -> str:
    ns = ticks * TICK_NS
    if ns < 1_000_000:
        return f"{ns / 1e3:.3f} us"
    return f"{ns / 1e9:.6f} s"


def event_to_text(event: Event, event_id: int, strip_of: StripNamer = _no_strip) -> str:
    """A few readable lines per event: header, then per channel its samples by runs of bins."""
    flags = ",".join(flag_names(event.flags)) or "ok"
    lines = [
        f"event {event_id}  count={event.event_count} type={event.event_type} "
        f"ts={event.timestamp} ({_format_time(event.timestamp)}) source={event.source_id} "
        f"channels={len(event.channels)} flags={flags}"
    ]
    if event.hit_counts:
        hits = " ".join(f"{card}/{chip}:{n}" for card, chip, n in event.hit_counts)
        lines.append(f"  hit counts (card/chip:n) {hits}")
    if event.last_cells:
        cells = " ".join(f"{chip}:{cell}" for chip, cell in event.last_cells)
        lines.append(f"  last cells (chip:cell) {cells}")
    for ch in event.channels:
        bins = np.asarray(ch.bins).tolist()
        adc = np.asarray(ch.adc).tolist()
        strip = strip_of(int(ch.card), int(ch.chip), int(ch.channel)) or "-"
        span = f"bins {bins[0]}..{bins[-1]}" if bins else "no samples"
        lines.append(
            f"  card {ch.card} chip {ch.chip} ch {ch.channel:2d}  strip {strip:<4s} "
            f"{len(bins)} samples, {span}"
        )
        for a, b in _runs(bins):
            for k in range(a, b, SAMPLES_PER_LINE):
                chunk = adc[k : min(b, k + SAMPLES_PER_LINE)]
                lines.append(f"    {bins[k]:3d}: " + " ".join(f"{v:4d}" for v in chunk))
    return "\n".join(lines)
