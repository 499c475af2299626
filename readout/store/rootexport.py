"""ROOT export in feminos-daq's layout (PROTOCOL.md §5.2), written with uproot.

Tree ``events``, one entry per event:

==================  ==================  ===============================================
branch              type                content
==================  ==================  ===============================================
``timestamp``       uint64              PC wall-clock ms when the event was built (as FD)
``signal_ids``      uint16[]            card·288 + chip·72 + channel, increasing
``signal_values``   uint16[]            512 samples per signal, in ``signal_ids`` order
``card_timestamp``  uint64              the card's 48-bit timestamp (20 ns ticks) [extra]
``event_id``        uint64              DAQ event number (FD has none: entry index) [extra]
``event_count``     uint32              the card's event counter [extra]
==================  ==================  ===============================================

Tree ``run``, one entry: ``number``, ``name``, ``timestamp`` (ms), ``detector``, ``tag``,
``comments``, ``commands``, ``drift_field_V_cm_bar``, ``mesh_voltage_V``,
``detector_pressure_bar`` (NaN when not given).

Differences from feminos-daq, on purpose:

* Samples are placed **at their time bins** (FD left-packs zero-suppressed samples and does not
  clear its scratch array between signals). Bins the card did not send hold the ``fill`` value:
  ``baseline`` (default) = the median of the channel's first 8 samples, which zero suppression
  keeps before every kept run (``zs_pre_post``), so a waveform looks like the card's pedestal
  level; ``zero`` = 0; or a number. A channel read in full (512 bins) needs no fill.
* The card timestamp and the event ids have their own branches.
* uproot writes variable-length branches as counted C arrays (``uint16_t[nsignal_ids]``, with
  the counter branches ``nsignal_ids`` and ``nsignal_values``) and strings as ``char*``, not as
  ``std::vector<unsigned short>`` / ``std::string`` objects. uproot (the feminos-daq viewer),
  ``TTree::Draw`` and RDataFrame read them alike; C++ code that binds ``std::vector`` pointers
  (REST's TRestRawFeminosRootToSignalProcess) must bind arrays instead.

The file is written as ``<output>.part`` and renamed when complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agetdaq.protocol.event import Event
from agetdaq.readout.store.convert import ConvertError, ConvertReport
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.run import Run, open_run

N_BINS = 512
PRE_SAMPLES = 8
FILLS = ("baseline", "zero")
COMPRESSIONS = ("lzma", "zlib", "lz4", "zstd", "none")
ROOT_OPTIONS = (
    "fill",
    "compression",
    "level",
    "drift_field",
    "mesh_voltage",
    "pressure",
    "detector",
    "waveforms",
    "chunk_events",
)


@dataclass
class RootRunInfo:
    """The ``run`` tree's single entry."""

    number: int = 0
    name: str = ""
    timestamp_ms: int = 0
    detector: str = ""
    tag: str = ""
    comments: str = ""
    commands: str = ""
    drift_field_V_cm_bar: float = math.nan
    mesh_voltage_V: float = math.nan
    detector_pressure_bar: float = math.nan


def fill_value(adc: np.ndarray, fill: str | int) -> int:
    """The value of the bins a channel did not send (see the module docstring)."""
    if fill == "zero":
        return 0
    if fill == "baseline":
        return int(np.round(np.median(adc[:PRE_SAMPLES]))) if len(adc) else 0
    return int(fill)


def event_block(event: Event, fill: str | int) -> tuple[np.ndarray, np.ndarray, int]:
    """(signal ids increasing, (n, 512) samples at their bins, samples outside 0..511)."""
    chans = sorted(event.channels, key=lambda c: c.signal_id)
    ids = np.array([c.signal_id for c in chans], dtype=np.uint16)
    values = np.empty((len(chans), N_BINS), dtype=np.uint16)
    outside = 0
    for row, c in zip(values, chans):
        bins = np.asarray(c.bins, dtype=np.int64)
        adc = np.asarray(c.adc, dtype=np.uint16)
        inside = bins < N_BINS
        if len(bins) != N_BINS or not inside.all():
            row.fill(fill_value(adc, fill))
        row[bins[inside]] = adc[inside]
        outside += int((~inside).sum())
    return ids, values, outside


# ---- sources -------------------------------------------------------------------------------


def _events(run: Run, waveforms: str) -> Iterator[tuple[Event, int, int]]:
    """(event, event_id, time_ns) of a run: for a run file its event ids and host times, for a
    decoded file the position and the run start."""
    start_ns = int(run.info.start_unix * 1e9)
    if run.format != "h5":
        for i, ev in enumerate(run.events()):
            yield ev, i, start_ns
        return
    raw = run.has_raw if waveforms == "auto" else waveforms == "raw"
    rows = run.rows()
    names = rows.dtype.names or ()
    ids = rows["event_id"] if "event_id" in names else np.arange(len(rows), dtype=np.uint64)
    times = rows["time_ns"] if "time_ns" in names else np.zeros(len(rows), dtype=np.uint64)
    for i, ev in enumerate(run.events(raw=raw)):
        yield ev, int(ids[i]), int(times[i]) or start_ns


def run_info(run: Run, **given: object) -> RootRunInfo:
    """The ``run`` entry from a run's metadata and the values given on the command line."""
    nan = math.nan
    info, meta = run.info, run.metadata
    return RootRunInfo(
        number=info.run_number,
        name=run.path.stem,
        timestamp_ms=int(info.start_unix * 1000),
        detector=str(given.get("detector") or info.detector),
        tag=info.run_type,
        comments=info.comment,
        commands=str(meta.get("script", "")),
        drift_field_V_cm_bar=float(_or(given.get("drift_field"), nan)),
        mesh_voltage_V=float(_or(given.get("mesh_voltage"), nan)),
        detector_pressure_bar=float(_or(given.get("pressure"), nan)),
    )


def _or(value: object, default: float) -> object:
    return default if value is None else value


# ---- writing -------------------------------------------------------------------------------


def _compression(name: str, level: int | None) -> object:
    import uproot

    if name not in COMPRESSIONS:
        raise ConvertError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    if name == "none":
        return None
    cls = {"lzma": uproot.LZMA, "zlib": uproot.ZLIB, "lz4": uproot.LZ4, "zstd": uproot.ZSTD}[name]
    return cls(level) if level is not None else cls(1)


EVENT_BRANCHES = {
    "timestamp": "uint64",
    "signal_ids": "var * uint16",
    "signal_values": "var * uint16",
    "card_timestamp": "uint64",
    "event_id": "uint64",
    "event_count": "uint32",
}
RUN_BRANCHES = {
    "number": "uint64",
    "name": "string",
    "timestamp": "uint64",
    "detector": "string",
    "tag": "string",
    "comments": "string",
    "commands": "string",
    "drift_field_V_cm_bar": "float32",
    "mesh_voltage_V": "float32",
    "detector_pressure_bar": "float32",
}


def export_root(
    source: str | Path,
    output: str | Path,
    *,
    fill: str | int = "baseline",
    compression: str = "lzma",
    level: int | None = None,
    drift_field: float | None = None,
    mesh_voltage: float | None = None,
    pressure: float | None = None,
    detector: str | None = None,
    waveforms: str = "auto",
    chunk_events: int = 1000,
) -> ConvertReport:
    """Write a run (a run file, an ``.aqs`` run or a capture: ``open_run``) as a feminos-daq
    ROOT file.

    ``waveforms``: ``raw`` decodes the run file's raw datagrams (every channel the card sent, as
    feminos-daq stores), ``stored`` uses the stored waveforms, ``auto`` raw when present. The
    events of an ``.aqs`` run or a capture are always those decoded from its datagrams.
    """
    try:
        import awkward as ak
        import uproot
    except ImportError as exc:
        raise ConvertError(
            f"ROOT export needs uproot and awkward (pip install 'agetdaq[root]'): {exc}"
        ) from None
    source, output = Path(source), Path(output)
    if fill not in FILLS:
        try:
            fill = int(fill)
        except (TypeError, ValueError):
            raise ConvertError(f"fill must be baseline, zero or a number, not {fill!r}") from None
        if not 0 <= fill <= 0xFFFF:
            raise ConvertError(f"fill value {fill} is not a 16-bit sample")
    if waveforms not in ("auto", "raw", "stored"):
        raise ConvertError(f"waveforms must be auto, raw or stored, not {waveforms!r}")
    try:
        run = open_run(source)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None
    with run:
        if run.format == "h5" and waveforms == "raw" and not run.has_raw:
            raise ConvertError(f"{source}: no raw datagrams in the file (use --waveforms stored)")
        info = run_info(
            run, detector=detector, drift_field=drift_field,
            mesh_voltage=mesh_voltage, pressure=pressure,
        )  # fmt: skip
        report = ConvertReport(str(source), str(output))
        outside = 0
        part = output.with_name(output.name + ".part")
        try:
            with uproot.recreate(part, compression=_compression(compression, level)) as f:
                tree = f.mktree("events", EVENT_BRANCHES, title="events")
                chunk: list[tuple[Event, int, int]] = []
                for item in _events(run, waveforms):
                    chunk.append(item)
                    if len(chunk) >= chunk_events:
                        outside += _extend(tree, chunk, fill, ak)
                        report.events += len(chunk)
                        chunk = []
                if chunk:
                    outside += _extend(tree, chunk, fill, ak)
                    report.events += len(chunk)
                f.mktree("run", RUN_BRANCHES, title="run").extend(_run_entry(info, ak))
            os.replace(part, output)
        finally:
            if part.exists():
                part.unlink()
    report.counters = {"fill": fill, "samples_outside_512_bins": outside, "run": info.__dict__}
    return report


def _extend(tree: object, chunk: list[tuple[Event, int, int]], fill: str | int, ak) -> int:
    ids, values, outside = [], [], 0
    for ev, _, _ in chunk:
        i, v, o = event_block(ev, fill)
        ids.append(i)
        values.append(v.reshape(-1))
        outside += o
    n_sig = np.array([len(i) for i in ids], dtype=np.int64)
    flat_ids = np.concatenate(ids) if ids else np.zeros(0, np.uint16)
    flat_values = np.concatenate(values) if values else np.zeros(0, np.uint16)
    tree.extend(
        {
            "timestamp": np.array([t // 1_000_000 for _, _, t in chunk], dtype=np.uint64),
            "signal_ids": ak.unflatten(flat_ids, n_sig),
            "signal_values": ak.unflatten(flat_values, n_sig * N_BINS),
            "card_timestamp": np.array([ev.timestamp for ev, _, _ in chunk], dtype=np.uint64),
            "event_id": np.array([e for _, e, _ in chunk], dtype=np.uint64),
            "event_count": np.array([ev.event_count for ev, _, _ in chunk], dtype=np.uint32),
        }
    )
    return outside


def _run_entry(info: RootRunInfo, ak) -> dict[str, object]:
    def text(value: str) -> object:
        return ak.Array([value])

    return {
        "number": np.array([info.number], dtype=np.uint64),
        "name": text(info.name),
        "timestamp": np.array([info.timestamp_ms], dtype=np.uint64),
        "detector": text(info.detector),
        "tag": text(info.tag),
        "comments": text(info.comments),
        "commands": text(info.commands),
        "drift_field_V_cm_bar": np.array([info.drift_field_V_cm_bar], dtype=np.float32),
        "mesh_voltage_V": np.array([info.mesh_voltage_V], dtype=np.float32),
        "detector_pressure_bar": np.array([info.detector_pressure_bar], dtype=np.float32),
    }
