"""Event builder: counter gaps, duplicates, reboots, time order, chip completeness, selection."""

from __future__ import annotations

import numpy as np

from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.readout.datapath.build import BuilderConfig, EventBuilder, select_events
from agetdaq.readout.schema import BuildFlag


def _event(count: int, ts: int, chips=(0, 1, 2, 3)) -> Event:
    chans = [
        Channel(0, chip, 10 + chip, np.arange(3, dtype=np.uint16), np.full(3, count, np.uint16))
        for chip in chips
    ]
    return Event(event_type=1, timestamp=ts, event_count=count, channels=chans)


def _decode(events: list[Event]):
    buf, lengths = pack_datagrams(encode_events(events))
    return StreamDecoder().decode(buf, lengths)


def test_clean_stream_gets_consecutive_ids_and_no_flags():
    b = EventBuilder()
    out = b.build(_decode([_event(c, 100 * c) for c in range(1, 6)]))
    assert list(out.event_id) == [0, 1, 2, 3, 4]
    assert not out.build_flags.any()
    assert b.counters.missing == 0


def test_gap_duplicate_out_of_order_and_restart_are_flagged():
    b = EventBuilder()
    counts_ts = [(1, 10), (2, 20), (5, 50), (5, 50), (4, 60), (0, 5), (1, 7)]
    out = b.build(_decode([_event(c, t) for c, t in counts_ts]))
    flags = [BuildFlag(int(f)) for f in out.build_flags]
    # the duplicate (5, 50) is dropped by default
    assert list(out.decoded.event_count) == [1, 2, 5, 4, 0, 1]
    assert flags[2] == BuildFlag.COUNTER_GAP
    assert flags[3] == BuildFlag.OUT_OF_ORDER
    assert flags[4] == BuildFlag.BOARD_RESTART
    assert flags[5] == BuildFlag.NONE
    c = b.counters
    assert (c.missing, c.duplicates, c.out_of_order, c.restarts, c.dropped) == (2, 1, 1, 1, 1)


def test_state_carries_across_batches():
    b = EventBuilder()
    b.build(_decode([_event(1, 10), _event(2, 20)]))
    out = b.build(_decode([_event(4, 5)]))
    assert BuildFlag.COUNTER_GAP in BuildFlag(int(out.build_flags[0]))
    assert BuildFlag.TIME_BACKWARDS in BuildFlag(int(out.build_flags[0]))
    assert list(out.event_id) == [2]


def test_missing_chip_flagged_in_full_readout():
    b = EventBuilder(BuilderConfig(check_chips=True))
    out = b.build(_decode([_event(1, 1), _event(2, 2, chips=(0, 1, 3))]))
    assert [BuildFlag.INCOMPLETE in BuildFlag(int(f)) for f in out.build_flags] == [False, True]
    assert b.counters.incomplete == 1


def test_select_events_reindexes_channels_and_samples():
    batch = _decode([_event(c, c) for c in (1, 2, 3)])
    sub = select_events(batch, np.array([True, False, True]))
    events = sub.events()
    assert [e.event_count for e in events] == [1, 3]
    assert all(int(c.adc[0]) == e.event_count for e in events for c in e.channels)


def test_a_damaged_duplicate_is_counted_as_a_duplicate_only():
    """Every damaged event the builder counts is one it hands on (flagged) or drops as damaged."""
    batch = _decode([_event(1, 10), _event(2, 20), _event(2, 20), _event(3, 30)])
    batch.flags[1:3] = 1  # the first copy and its duplicate both arrived truncated
    b = EventBuilder()
    out = b.build(batch)
    assert list(out.decoded.event_count) == [1, 2, 3]
    handed_on = int(((out.build_flags & BuildFlag.DAMAGED) != 0).sum())
    assert (b.counters.damaged, b.counters.duplicates, handed_on) == (1, 1, 1)
