"""The one definition of the record and of the stream messages (docs/FILE_FORMAT.md, STREAM.md).

Everything that writes or reads a run file or a stream message imports its names from here: the
row types of the run file's tables, the bits of ``build_flags``, the event classes, the pedestal
flags, the stream topics and the fields of their messages, and :data:`FORMAT_VERSION`. The data
path produces what this module declares (``datapath.processing.features`` builds its feature
record from :data:`FEATURE_COLUMNS`), never the other way round.

Changing a column, a dtype, a flag bit or a class code changes the file format: bump
:data:`FORMAT_VERSION`, say what changed in docs/FILE_FORMAT.md and keep the reader able to read
the older versions. ``tests/test_schema.py`` holds the fingerprint of every version and fails
until that is done. Dataset names and compression are in :mod:`agetdaq.readout.store.layout`.
"""

from __future__ import annotations

import hashlib
import json
from enum import IntEnum, IntFlag

import numpy as np

from agetdaq.protocol.event import EventFlag

FORMAT_NAME = "agetdaq-run"  # root attribute ``format`` of every run file
FORMAT_VERSION = 4
FORMAT_HISTORY = {
    1: "first release",
    2: "event columns raw_first / raw_count; build flag SAMPLES_IN_RAW (samples only in raw/)",
    3: "end of run recorded in SWMR mode: meta_out/final (JSON record), meta_out/pedestals "
    "created empty at the start",
    4: "run facts as typed attributes of /meta (units in <name>_units), long texts as UTF-8 "
    "datasets; status rows index their whole JSON in status_json (no 2 048-byte cut)",
}

# ---- build flags (event column ``build_flags``) -------------------------------------------------


class BuildFlag(IntFlag):
    """Bits of the ``build_flags`` column: the event builder's checks, then the data path's."""

    NONE = 0
    COUNTER_GAP = 1  # events missing before this one (card counter jumped)
    DUPLICATE = 2  # same counter as the previous event (dropped unless keep_duplicates)
    OUT_OF_ORDER = 4  # counter went backwards without a reboot
    TIME_BACKWARDS = 8  # timestamp earlier than the previous event's
    INCOMPLETE = 16  # an expected chip or source is missing
    DAMAGED = 32  # the decoder flagged this event (EventFlag != 0)
    BOARD_RESTART = 64  # counter and timestamp restarted: the board rebooted
    SAMPLES_IN_RAW = 0x4000  # no channel rows stored: decode the event from raw/ (v2)
    NOT_PROCESSED = 0x8000  # features not computed (processing shed under load, or converted)


# plain ints for numpy masks (IntFlag arithmetic on arrays is slow)
NOT_PROCESSED = int(BuildFlag.NOT_PROCESSED)
SAMPLES_IN_RAW = int(BuildFlag.SAMPLES_IN_RAW)
BOARD_RESTART = int(BuildFlag.BOARD_RESTART)
BUILDER_FLAGS = int(
    BuildFlag.COUNTER_GAP
    | BuildFlag.DUPLICATE
    | BuildFlag.OUT_OF_ORDER
    | BuildFlag.TIME_BACKWARDS
    | BuildFlag.INCOMPLETE
    | BuildFlag.DAMAGED
    | BuildFlag.BOARD_RESTART
)  # the builder's own checks

# ---- event classes (event column ``cls``, stream field ``class``) ----------------------------


class EventClass(IntEnum):
    """Classification of an event by the processing (DETECTOR.md, X-ray-like selection)."""

    NOISE = 0
    XRAY = 1
    MUON = 2
    OTHER = 3


CLASS_NAMES: tuple[str, ...] = tuple(c.name.lower() for c in EventClass)  # by code: "xray" ...
CLASS_LABELS: dict[int, str] = {0: "noise", 1: "X-ray-like", 2: "muon-like", 3: "other"}

# ---- the run file's tables ---------------------------------------------------------------------

RAW_INDEX_DTYPE = np.dtype(
    [
        ("offset", "<u8"),  # first word in raw/words
        ("nbytes", "<u4"),  # datagram length in bytes
        ("arrival_ns", "<u8"),  # host time.time_ns() at reception
    ]
)

EVENT_HEADER_COLUMNS: list[tuple[str, str]] = [
    ("event_id", "<u8"),  # DAQ sequence number
    ("event_count", "<u4"),  # the card's event counter
    ("timestamp", "<u8"),  # card clock, 20 ns ticks
    ("type", "u1"),  # event type of the card
    ("source_id", "u1"),
    ("flags", "<u2"),  # agetdaq.protocol.event.EventFlag bits (decoder damage)
    ("build_flags", "<u2"),  # BuildFlag bits
    ("n_channels", "<u2"),  # channels the card sent
    ("time_ns", "<u8"),  # host time of completion
    ("raw_first", "<u8"),  # row in raw/index of the datagram holding the start of the event (v2)
    ("raw_count", "<u4"),  # datagrams from raw_first to the one holding its end (v2)
]

FEATURE_COLUMNS: list[tuple[str, str]] = [
    ("n_hits", "<i2"),  # hit strips, both axes
    ("nx", "<i2"),  # hit X strips
    ("ny", "<i2"),  # hit Y strips
    ("ex", "<f4"),  # sum of X hit amplitudes, ADC
    ("ey", "<f4"),  # sum of Y hit amplitudes, ADC
    ("energy", "<f4"),  # ex + ey
    ("balance", "<f4"),  # |ex - ey| / (ex + ey)
    ("ncl_x", "<i2"),  # clusters on X
    ("ncl_y", "<i2"),
    ("size_x", "<i2"),  # hit strips in the main X cluster
    ("size_y", "<i2"),
    ("x_mm", "<f4"),  # main X cluster centroid
    ("y_mm", "<f4"),
    ("sigma_x", "<f4"),  # main X cluster RMS width, mm
    ("sigma_y", "<f4"),
    ("t_spread", "<i2"),  # max - min peak bin over hits
    ("t_mean", "<f4"),  # amplitude-weighted mean peak bin
    ("width_max", "<i2"),  # longest pulse, bins
    ("amp_max", "<f4"),  # largest hit amplitude
    ("cls", "i1"),  # EventClass code
    ("trig", "?"),  # software trigger decision
]  # computed by agetdaq.readout.datapath.processing; zero where NOT_PROCESSED

EVENT_DTYPE = np.dtype(EVENT_HEADER_COLUMNS + FEATURE_COLUMNS)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURE_COLUMNS)

CHANNEL_DTYPE = np.dtype(
    [
        ("event_row", "<u8"),  # row in /events
        ("card", "u1"),
        ("chip", "u1"),
        ("channel", "u1"),  # DAQ channel index
        ("strip", "<i2"),  # global strip index (X 0..119, Y 120..239) or -1
        ("sample_start", "<u8"),  # first row in samples/*
        ("n_samples", "<u2"),
    ]
)
SAMPLE_DTYPE = np.dtype("<u2")  # samples/bin (time bin) and samples/adc (raw ADC, as received)
RAW_WORD_DTYPE = np.dtype("<u2")  # raw/words


class AuxKind(IntEnum):
    """``kind`` of an aux row."""

    HIT_COUNT = 0  # (card, chip, value = hit channels)
    LAST_CELL = 1  # (chip, value = last SCA cell read)


AUX_HIT_COUNT = int(AuxKind.HIT_COUNT)
AUX_LAST_CELL = int(AuxKind.LAST_CELL)
AUX_DTYPE = np.dtype(
    [
        ("event_row", "<u8"),
        ("kind", "u1"),  # AuxKind
        ("card", "u1"),
        ("chip", "u1"),
        ("value", "<u2"),
    ]
)

STATUS_DTYPE = np.dtype(
    [
        ("time_ns", "<u8"),  # host time of the snapshot
        ("offset", "<u8"),  # first byte of its JSON in status_json (v4)
        ("nbytes", "<u4"),  # length of its JSON (v4)
    ]
)
STATUS_TEXT_DTYPE = np.dtype("u1")  # status_json: the snapshots' UTF-8 JSON, back to back (v4)
STATUS_DTYPE_V3 = np.dtype([("time_ns", "<u8"), ("json", "S2048")])  # versions 1-3: JSON cut


class PedestalFlag(IntFlag):
    """Bits of a pedestal row's ``flags``."""

    NONE = 0
    DEAD = 1
    NOISY = 2
    MASKED = 4


PEDESTAL_DTYPE = np.dtype(
    [
        ("card", "u1"),
        ("chip", "u1"),
        ("channel", "u1"),  # DAQ channel index
        ("strip", "<i2"),  # global strip, -1 for the FPN channels
        ("mean", "<f4"),
        ("sigma", "<f4"),
        ("threshold", "<f4"),
        ("flags", "u1"),  # PedestalFlag
    ]
)

# ---- the monitoring stream (docs/STREAM.md) ------------------------------------------------------

TOPIC_STATUS = "status"
TOPIC_SUMMARY = "summary"
TOPIC_EVENT = "event"
TOPIC_HIST = "hist"
TOPIC_CALIB = "calib"
TOPIC_PEDESTAL = "pedestal"
TOPIC_ALARM = "alarm"
TOPIC_RUN = "run"
TOPICS = (
    TOPIC_STATUS,
    TOPIC_SUMMARY,
    TOPIC_EVENT,
    TOPIC_HIST,
    TOPIC_CALIB,
    TOPIC_PEDESTAL,
    TOPIC_ALARM,
    TOPIC_RUN,
)

ENVELOPE_FIELDS = ("seq", "time", "source", "topic", "arrays")  # every header (transport.stream)

STATUS_FIELDS = (
    "state",
    "run_number",
    "run_type",
    "comment",
    "start_time",
    "elapsed_s",
    "events",
    "events_per_s",
    "trigger_rate",
    "mb_per_s",
    "bytes",
    "queue_fill",
    "losses",
    "not_processed",  # events recorded but not processed online (shed under load): no loss
    "disk_free_gb",
    "file",
    "file_mb",
    "board",
    "board_alive",
    "data_age_s",
    "class_counts",  # {CLASS_NAMES[code]: count}
    "dead_time",  # fraction (not sent by every producer)
    "signals_last_event",
    "masked",  # masked strips
    "message",
    "data_lost",  # events or datagrams lost in this run (socket, link, decoder, builder, writer)
    "not_processed",  # events recorded but not processed online (the shed stage)
    "board_restarts",  # board reboots seen in this run
    "script",  # the command script the board was configured with
    "pedestal_table",  # the pedestal table the processing uses ("" = none)
    "last_run",  # the run that ended last: {RUN_ENTRY_FIELDS} ({} before any)
    "killed_run",  # a run the run log saw start but never end (the DAQ died): {...} or {}
    "pedestal_upload",  # the pedestal upload: {phase, and its last outcome} (not in run files)
)

# ``summary`` arrays: stream name -> event column, one entry per processed event of a batch
SUMMARY_FIELDS: dict[str, str] = {
    "event_id": "event_id",
    "timestamp": "timestamp",
    "class": "cls",
    "trig": "trig",
    "energy_adc": "energy",
    "energy_x": "ex",
    "energy_y": "ey",
    "x_mm": "x_mm",
    "y_mm": "y_mm",
    "n_clusters_x": "ncl_x",
    "n_clusters_y": "ncl_y",
    "size_x": "size_x",
    "size_y": "size_y",
    "sigma_x": "sigma_x",
    "sigma_y": "sigma_y",
    "balance": "balance",
    "n_hits": "n_hits",
    "t_spread": "t_spread",
}
SUMMARY_TIME = "time_s"  # host time (s) of each event, from the column time_ns
SUMMARY_ARRAYS = (*SUMMARY_FIELDS, SUMMARY_TIME)
SUMMARY_HEADER = ("run_number", "n")

EVENT_MESSAGE_HEADER = ("run_number", "event_id", "event_count", "timestamp", "class",
                        "time_s", "processed", "samples")  # fmt: skip
EVENT_SAMPLES = ("corrected", "recorded")  # ``samples``: online-corrected, or raw ADC as recorded
EVENT_MESSAGE_ARRAYS = ("waveforms", "hits")  # float32 (n_strips, T); bool (n_strips,), optional

HIST_HEADER = ("run_number", "spectrum_max_adc", "class_counts", "events", "not_processed",
               "occupancy_events", "outside")  # fmt: skip
HIST_ARRAYS = ("hitmap", "occupancy", "spectrum", "x_edges_mm", "y_edges_mm")

PEDESTAL_HEADER = ("run_number", "k_sigma")
PEDESTAL_ARRAYS: tuple[str, ...] = tuple(PEDESTAL_DTYPE.names)

CALIB_KINDS = ("point", "live", "map")  # header ``kind`` of a ``calib`` message
CALIB_COMMON = ("kind", "run_number", "readout", "reference_gain", "reference_from",
                "slice_xrays", "slice_minutes")  # fmt: skip
CALIB_HEADER = (  # kind "point": a closed trend slice
    *CALIB_COMMON,
    "slice",
    "t_start",
    "t_end",
    "counts",
    "events",
    "ok",
    "peak_adc",
    "gain",
    "gain_rel",
    "gain_rel_err",
    "fwhm_rel",
    "fwhm_rel_err",
    "threshold_kev",
    "threshold_kev_adc",
    "threshold_kev_spectrum",
    "chi2_ndf",
    "reason",
    "part",  # "k/n": part k of a slice split where the gain changed; "" for a whole slice
    "flag",  # why a good point is marked (e.g. "part 1/2 of slice 3: <why split>")
)
CALIB_ARRAYS = ("spectrum", "edges")
CALIB_LIVE_HEADER = (  # kind "live": the fit of the last N selected X-rays (or T minutes)
    *CALIB_COMMON,
    "t_start",
    "t_end",
    "counts",
    "window_xrays",
    "window_minutes",  # null: no time limit
    "kev_per_adc",  # energy scale of the spectrum (1 / reference gain), null when not known
    "energy_scale",  # what kev_per_adc comes from: "reference", "this fit" or ""
    "ok",
    "reason",
    "peak_adc",
    "peak_adc_err",
    "gain",
    "gain_rel",
    "gain_rel_err",
    "fwhm_rel",
    "fwhm_rel_err",
    "threshold_kev",
    "n_peak",
    "n_escape",
    "escape_adc",
    "chi2_ndf",
)
CALIB_LIVE_ARRAYS = ("spectrum", "edges", "curve_x", "curve_y")
CALIB_MAP_HEADER = (*CALIB_COMMON, "nx", "ny", "x_range_mm", "y_range_mm",
                    "reference_peak_adc", "reasons")  # fmt: skip
CALIB_MAP_ARRAYS = ("rel_gain", "peak_adc", "counts")

# ``run``: the DAQ's recent runs from its run log and the command scripts it ships
RUN_HEADER = ("runs", "scripts")
RUN_ENTRY_FIELDS = ("run_number", "run_type", "comment", "file", "start_time", "end_time",
                    "elapsed_s", "events", "stop_reason", "killed")  # fmt: skip


def summary_arrays(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The ``summary`` arrays of event rows (the caller selects the processed ones)."""
    out = {key: np.ascontiguousarray(rows[col]) for key, col in SUMMARY_FIELDS.items()}
    out[SUMMARY_TIME] = rows["time_ns"].astype(np.float64) / 1e9
    return out


# ---- fingerprint ---------------------------------------------------------------------------------


def _dtype(dtype: np.dtype) -> list[list[str]]:
    return [[name, dtype[name].str] for name in dtype.names]


def describe() -> dict[str, object]:
    """The canonical description of the record: every row type and every stored code."""
    return {
        "format": FORMAT_NAME,
        "dtypes": {
            "raw_index": _dtype(RAW_INDEX_DTYPE),
            "raw_word": RAW_WORD_DTYPE.str,
            "events": _dtype(EVENT_DTYPE),
            "channels": _dtype(CHANNEL_DTYPE),
            "sample": SAMPLE_DTYPE.str,
            "aux": _dtype(AUX_DTYPE),
            "status": _dtype(STATUS_DTYPE),
            "status_text": STATUS_TEXT_DTYPE.str,
            "pedestals": _dtype(PEDESTAL_DTYPE),
        },
        "build_flags": {f.name: int(f) for f in BuildFlag if f},
        "event_flags": {f.name: int(f) for f in EventFlag if f},
        "classes": {c.name: int(c) for c in EventClass},
        "aux_kinds": {k.name: int(k) for k in AuxKind},
        "pedestal_flags": {f.name: int(f) for f in PedestalFlag if f},
    }


def fingerprint(extra: dict[str, object] | None = None) -> str:
    """sha256 of :func:`describe` (plus ``extra``, e.g. the dataset names) as canonical JSON."""
    text = json.dumps({**describe(), **(extra or {})}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
