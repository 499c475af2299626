"""Event building: checks and merges the decoded events of one board stream.

The BEC reads the 4 FECs (chips 0-3 of one card) into one event, so for BabyIAXO building is a
check of every decoded event: the card's event counter must advance by one (a jump counts the
missing events, a repeat is a duplicate, a step back is out of order or a board reboot), the
timestamp must not go backwards, and in full readout every expected chip must be present. It works
on what has arrived and never waits. Merging several FEM streams by event counter (feminos-daq's
multi-FEM builder) is not needed here: one receiver serves one BEC.

Input is a :class:`agetdaq.protocol.decode.DecodedBatch`; output a :class:`BuiltBatch` with the same
flat tables plus a DAQ event id and ``build_flags`` per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import DecodedBatch
from agetdaq.protocol.mapping import N_CHIPS
from agetdaq.readout.schema import BuildFlag


@dataclass
class BuilderConfig:
    expected_chips: tuple[int, ...] = tuple(range(N_CHIPS))  # the build stage: the mapping's
    check_chips: bool = False  # only meaningful in full readout (ZS may omit quiet chips)
    keep_duplicates: bool = False
    drop_damaged: bool = False  # drop decoder-flagged events instead of flagging them


_GAP, _DUP, _BACK, _TBACK = (int(f) for f in (
    BuildFlag.COUNTER_GAP, BuildFlag.DUPLICATE, BuildFlag.OUT_OF_ORDER, BuildFlag.TIME_BACKWARDS
))  # fmt: skip
_INCOMPLETE, _DAMAGED, _RESTART = (
    int(BuildFlag.INCOMPLETE),
    int(BuildFlag.DAMAGED),
    int(BuildFlag.BOARD_RESTART),
)

RECENT_COUNTS = 4096  # event counters remembered to tell a late event from a duplicate


@dataclass
class _Checks:
    """Per-event results of the counter and time checks of one batch."""

    gap: np.ndarray
    n_missing: int
    dup: np.ndarray
    back: np.ndarray
    late: int
    tback: np.ndarray
    restart: np.ndarray


@dataclass
class BuiltBatch:
    """Built events: decoder tables (rows selected) + DAQ ids and build flags."""

    decoded: DecodedBatch
    event_id: np.ndarray  # uint64 DAQ sequence number
    build_flags: np.ndarray  # uint16 BuildFlag bits

    def __len__(self) -> int:
        return len(self.event_id)


@dataclass
class BuilderCounters:
    events_in: int = 0
    events_out: int = 0
    missing: int = 0  # counter jumps: events not seen when the next one came
    late: int = 0  # of those, events that came later after all (reordered datagrams)
    duplicates: int = 0
    out_of_order: int = 0
    time_backwards: int = 0
    incomplete: int = 0
    damaged: int = 0
    dropped: int = 0
    restarts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def select_events(batch: DecodedBatch, keep: np.ndarray) -> DecodedBatch:
    """A DecodedBatch with only the events where ``keep`` is true (channels re-indexed)."""
    if keep.all():
        return batch
    ev = batch.events_table[keep]
    n_ch = ev[:, dk.EV_N_CHAN]
    ch_idx = _ranges(ev[:, dk.EV_CHAN_START], n_ch)
    ch = batch.channels_table[ch_idx]
    n_s = ch[:, dk.CH_N_SAMPLES].astype(np.int64)
    s_idx = _ranges(ch[:, dk.CH_SAMPLE_START].astype(np.int64), n_s)
    aux_idx = _ranges(ev[:, dk.EV_AUX_START], ev[:, dk.EV_N_AUX])
    ev = ev.copy()
    ch = ch.copy()
    ev[:, dk.EV_CHAN_START] = np.cumsum(n_ch) - n_ch
    ev[:, dk.EV_AUX_START] = np.cumsum(ev[:, dk.EV_N_AUX]) - ev[:, dk.EV_N_AUX]
    ch[:, dk.CH_SAMPLE_START] = np.cumsum(n_s) - n_s
    return DecodedBatch(
        ev,
        ch,
        batch.time_bin[s_idx],
        batch.adc[s_idx],
        batch.aux_table[aux_idx],
        batch.errors,
        batch.first_datagram,
        batch.n_datagrams,
    )


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + offsets


@dataclass
class EventBuilder:
    """Checks (and for several sources merges) the events of one stream, batch by batch."""

    config: BuilderConfig = field(default_factory=BuilderConfig)
    counters: BuilderCounters = field(default_factory=BuilderCounters)
    next_id: int = 0
    last_count: int = -1  # highest counter since the last restart (late events do not lower it)
    last_time: int = -1
    _recent: np.ndarray = field(default_factory=lambda: np.full(RECENT_COUNTS, -1, np.int64))
    _n_recent: int = 0

    def build(self, batch: DecodedBatch) -> BuiltBatch:
        n = len(batch)
        self.counters.events_in += n
        count = batch.event_count.astype(np.int64)
        ts = batch.timestamp.astype(np.int64)
        prev_count = np.empty(n, dtype=np.int64)
        prev_time = np.empty(n, dtype=np.int64)
        if n:
            prev_count[0], prev_time[0] = self.last_count, self.last_time
            prev_count[1:], prev_time[1:] = count[:-1], ts[:-1]
        known = prev_count >= 0
        step = count - prev_count
        restart = known & (step < 0) & (ts < prev_time) & (count <= 1)
        if (known & (step <= 0) & ~restart).any():
            checks = self._checks_in_order(count, ts)  # rare: duplicates, late events
        else:
            checks = _Checks(
                gap=known & (step > 1),
                n_missing=int((step[known & (step > 1)] - 1).sum()),
                dup=np.zeros(n, dtype=bool),
                back=np.zeros(n, dtype=bool),
                late=0,
                tback=known & (ts < prev_time) & ~restart,
                restart=restart,
            )
            if n:
                self.last_count, self.last_time = int(count[-1]), int(ts[-1])
        self._remember(count)
        # plain ints and count_nonzero: IntFlag arithmetic on arrays costs ~10 us a call
        flags = np.zeros(n, dtype=np.int64)
        c = self.counters
        for mask, bit in (
            (checks.gap, _GAP),
            (checks.dup, _DUP),
            (checks.back, _BACK),
            (checks.tback, _TBACK),
            (checks.restart, _RESTART),
        ):
            if mask.any():
                flags[mask] |= bit
        damaged = batch.flags != 0
        any_damaged = bool(damaged.any())
        if any_damaged:
            flags[damaged] |= _DAMAGED
        if self.config.check_chips and n:
            incomplete = ~self._chips_complete(batch)
            flags[incomplete] |= _INCOMPLETE
            c.incomplete += int(np.count_nonzero(incomplete))
        c.missing += checks.n_missing
        c.late += checks.late
        c.duplicates += int(np.count_nonzero(checks.dup))
        c.out_of_order += int(np.count_nonzero(checks.back))
        c.time_backwards += int(np.count_nonzero(checks.tback))
        c.restarts += int(np.count_nonzero(checks.restart))
        keep = ~checks.dup if not self.config.keep_duplicates else np.ones(n, dtype=bool)
        if any_damaged:
            # a dropped duplicate counts as a duplicate only
            c.damaged += int(np.count_nonzero(damaged & keep))
            if self.config.drop_damaged:
                keep &= ~damaged
        dropped = n - int(np.count_nonzero(keep))
        c.dropped += dropped
        if not dropped:
            return self._emit(batch, flags)
        return self._emit(select_events(batch, keep), flags[keep])

    def _checks_in_order(self, count: np.ndarray, ts: np.ndarray) -> _Checks:
        """Event by event: the reference is the highest counter seen since the last restart,
        so a late event (its counter was counted missing) is flagged out of order, un-counts
        one missing event and does not make the next in-order event look like a gap; an event
        whose counter was seen recently is a duplicate."""
        n = len(count)
        out = _Checks(
            np.zeros(n, bool), 0, np.zeros(n, bool), np.zeros(n, bool), 0,
            np.zeros(n, bool), np.zeros(n, bool),
        )  # fmt: skip
        last, last_t = self.last_count, self.last_time
        seen = set(self._recent.tolist()) if self._n_recent else set()
        for i in range(n):
            cnt, t = int(count[i]), int(ts[i])
            if last >= 0:
                step = cnt - last
                if step < 0 and t < last_t and cnt <= 1:
                    out.restart[i] = True
                    seen.clear()
                elif step > 0:
                    if step > 1:
                        out.gap[i] = True
                        out.n_missing += step - 1
                    out.tback[i] = t < last_t
                elif cnt in seen:
                    out.dup[i] = True
                    continue
                else:
                    out.back[i] = True
                    out.late += int(last - cnt < RECENT_COUNTS)
                    seen.add(cnt)
                    continue
            last, last_t = cnt, t
            seen.add(cnt)
        self.last_count, self.last_time = last, last_t
        return out

    def _remember(self, count: np.ndarray) -> None:
        """Keep the last RECENT_COUNTS event counters (duplicate detection of older events)."""
        if not len(count):
            return
        take = count[-RECENT_COUNTS:]
        pos = (self._n_recent + np.arange(len(take))) % RECENT_COUNTS
        self._recent[pos] = take
        self._n_recent += len(take)

    def _emit(self, batch: DecodedBatch, flags: np.ndarray) -> BuiltBatch:
        n = len(batch)
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.uint64)
        self.next_id += n
        self.counters.events_out += n
        return BuiltBatch(batch, ids, flags.astype(np.uint16))

    def _chips_complete(self, batch: DecodedBatch) -> np.ndarray:
        chips = batch.chip.astype(np.int64)
        owner = np.repeat(np.arange(len(batch)), batch.n_channels)
        present = np.zeros((len(batch), N_CHIPS), dtype=bool)
        present[owner, chips] = True
        return present[:, list(self.config.expected_chips)].all(axis=1)
