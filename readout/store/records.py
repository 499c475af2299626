"""Event-table rows from decoded events: the header columns every event row carries.

The data path adds the builder's event ids and flags and the processing features
(:func:`agetdaq.readout.datapath.rows.event_rows`); a decoded file (.aqs, capture) read through
:func:`agetdaq.readout.store.run.open_run` gets its rows from here alone (position as event id,
build flag NOT_PROCESSED).
"""

from __future__ import annotations

import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import DecodedBatch
from agetdaq.readout.schema import EVENT_DTYPE


def header_rows(
    decoded: DecodedBatch,
    event_id: np.ndarray,
    build_flags: np.ndarray | int,
    time_ns: np.ndarray | int,
) -> np.ndarray:
    """EVENT_DTYPE rows with the header columns filled and every feature zero."""
    rows = np.zeros(len(decoded), EVENT_DTYPE)
    rows["event_id"] = event_id
    rows["event_count"] = decoded.event_count
    rows["timestamp"] = decoded.timestamp
    rows["type"] = decoded.event_type
    rows["source_id"] = decoded.source_id
    rows["flags"] = decoded.flags
    rows["build_flags"] = build_flags
    rows["n_channels"] = decoded.n_channels
    rows["time_ns"] = time_ns
    ev = decoded.events_table
    rows["raw_first"] = ev[:, dk.EV_FIRST_DGRAM]
    rows["raw_count"] = ev[:, dk.EV_LAST_DGRAM] - ev[:, dk.EV_FIRST_DGRAM] + 1
    return rows
