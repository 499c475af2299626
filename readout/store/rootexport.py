"""ROOT export in feminos-daq's layout (PROTOCOL.md §5.2), written with ROOT itself.

Tree ``events``, one entry per event, with feminos-daq's C++ types (its ``StorageManager``), so
that C++ readers that bind ``std::vector<unsigned short>*`` with ``SetBranchAddress`` (REST's
TRestRawFeminosRootToSignalProcess, feminos-daq's viewer) read it as they read feminos-daq's:

==================  ==============================  ==========================================
branch              type                            content
==================  ==============================  ==========================================
``timestamp``       ``ULong64_t``                   host clock ms when the event was read (FD)
``signal_ids``      ``std::vector<unsigned short>`` card·288 + chip·72 + channel, increasing
``signal_values``   ``std::vector<unsigned short>`` 512 samples per signal, in ``signal_ids`` order
``card_timestamp``  ``ULong64_t``                   the card's 48-bit timestamp (20 ns) [extra]
``event_id``        ``ULong64_t``                   DAQ event number (FD: entry index) [extra]
``event_count``     ``UInt_t``                      the card's event counter [extra]
==================  ==============================  ==========================================

Tree ``run``, one entry, FD's branches and types: ``number`` (``ULong64_t``), ``name``,
``timestamp`` (ms), ``detector``, ``tag``, ``drift_field_V_cm_bar``, ``mesh_voltage_V``,
``detector_pressure_bar`` (``Float_t``, NaN when not given), ``comments``, ``commands``
(``std::string``).

Differences from feminos-daq, on purpose:

* Samples are placed **at their time bins** (FD left-packs zero-suppressed samples and does not
  clear its scratch array between signals). Bins the card did not send hold the ``fill`` value:
  ``baseline`` (default) = the median of the channel's first 8 samples, which zero suppression
  keeps before every kept run (``zs_pre_post``), so a waveform looks like the card's pedestal
  level; ``zero`` = 0; or a number. A channel read in full (512 bins) needs no fill.
* The card timestamp and the event ids have their own branches.
* Compression: ``zstd`` level 1 unless asked (ROOT's default is zstd 5, FD's lzma 1): the
  samples of full-readout runs are mostly noise, which compresses slowly; level 1 keeps the
  conversion near the rate it reads its input (docs/FILE_FORMAT.md has the figures).

The conversion streams (:mod:`~agetdaq.readout.store.rootblocks`): a few MB of events at a time,
whatever the input's size; ROOT fills the trees from flat arrays in compiled code (cling). The file
is written as ``<output>.part`` and renamed when complete. Needs the ``root`` extra (ROOT's own
Python package: ``pip install 'agetdaq[root]'``).
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agetdaq.protocol.event import Event
from agetdaq.readout.store.convert import ConvertError, ConvertReport
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.rootblocks import EventBlock, decoded_blocks, h5_blocks
from agetdaq.readout.store.run import Run, open_run

N_BINS = 512
PRE_SAMPLES = 8
FILLS = ("baseline", "zero")
COMPRESSIONS = {"zstd": (5, 1), "lzma": (2, 1), "zlib": (1, 1), "lz4": (4, 1), "none": (0, 0)}
"""name -> (ROOT algorithm code, default level)."""
BASKET_BYTES = 1 << 22  # per branch: a few full-readout events per basket
ROOT_OPTIONS = (
    "fill",
    "compression",
    "level",
    "drift_field",
    "mesh_voltage",
    "pressure",
    "detector",
    "waveforms",
    "progress",
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

_CPP = r"""
#include <TFile.h>
#include <TTree.h>
#include <string>
#include <vector>

namespace agetdaq_root {

// The events tree with feminos-daq's branch types, filled from flat arrays.
class EventsTree {
public:
    ULong64_t timestamp = 0, card_timestamp = 0, event_id = 0;
    UInt_t event_count = 0;
    std::vector<unsigned short> signal_ids, signal_values;
    TTree* tree = nullptr;

    EventsTree(TFile* file, Int_t basket) {
        file->cd();
        tree = new TTree("events", "Signal events: one entry per event, many signals each");
        tree->Branch("timestamp", &timestamp);
        tree->Branch("signal_ids", &signal_ids, basket);
        tree->Branch("signal_values", &signal_values, basket);
        tree->Branch("card_timestamp", &card_timestamp);
        tree->Branch("event_id", &event_id);
        tree->Branch("event_count", &event_count);
    }

    // numpy's int64 / uint64 are long / unsigned long here (ULong64_t is unsigned long long)
    Long64_t fill(Long64_t n, const unsigned long* ts, const unsigned long* cts,
                  const unsigned long* ids, const UInt_t* counts, const long* n_signals,
                  const unsigned short* sig, const unsigned short* values) {
        Long64_t s = 0, bytes = 0;
        for (Long64_t i = 0; i < n; ++i) {
            timestamp = ts[i];
            card_timestamp = cts[i];
            event_id = ids[i];
            event_count = counts[i];
            signal_ids.assign(sig + s, sig + s + n_signals[i]);
            signal_values.assign(values + 512 * s, values + 512 * (s + n_signals[i]));
            s += n_signals[i];
            bytes += tree->Fill();
        }
        return bytes;
    }
};

void write_run(TFile* file, ULong64_t number, std::string name, ULong64_t timestamp,
               std::string detector, std::string tag, float drift, float mesh, float pressure,
               std::string comments, std::string commands) {
    file->cd();
    TTree run("run", "Run metadata");
    run.Branch("number", &number);
    run.Branch("name", &name);
    run.Branch("timestamp", &timestamp);
    run.Branch("detector", &detector);
    run.Branch("tag", &tag);
    run.Branch("drift_field_V_cm_bar", &drift);
    run.Branch("mesh_voltage_V", &mesh);
    run.Branch("detector_pressure_bar", &pressure);
    run.Branch("comments", &comments);
    run.Branch("commands", &commands);
    run.Fill();
    run.Write();
}

}  // namespace agetdaq_root
"""


def load_root():
    """ROOT's Python module with the writer compiled in (once); ConvertError without it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the PyPI build announces itself as alpha
            import ROOT
    except ImportError as exc:
        raise ConvertError(f"ROOT export needs ROOT (pip install 'agetdaq[root]'): {exc}") from None
    if not hasattr(ROOT, "agetdaq_root"):
        ROOT.gROOT.SetBatch(True)
        if not ROOT.gInterpreter.Declare(_CPP):
            raise ConvertError("ROOT could not compile the agetdaq ROOT writer")
        # compression runs while the next block is read and decoded
        ROOT.agetdaq_root.EventsTree.fill.__release_gil__ = True
    return ROOT


def _compression(name: str, level: int | None) -> int:
    if name not in COMPRESSIONS:
        raise ConvertError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    algorithm, default = COMPRESSIONS[name]
    if name == "none":
        return 0
    lv = default if level is None else int(level)
    if not 1 <= lv <= 9:
        raise ConvertError(f"compression level {lv} not in 1..9")
    return 100 * algorithm + lv


@contextmanager
def terminal_progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """``advance(n_bytes)`` of a progress bar on stderr (none when ``total`` is 0)."""
    if total <= 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
        transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _check_options(fill: str | int, waveforms: str) -> str | int:
    if fill not in FILLS:
        try:
            fill = int(fill)
        except (TypeError, ValueError):
            raise ConvertError(f"fill must be baseline, zero or a number, not {fill!r}") from None
        if not 0 <= fill <= 0xFFFF:
            raise ConvertError(f"fill value {fill} is not a 16-bit sample")
    if waveforms not in ("auto", "raw", "stored"):
        raise ConvertError(f"waveforms must be auto, raw or stored, not {waveforms!r}")
    return fill


def export_root(
    source: str | Path,
    output: str | Path,
    *,
    fill: str | int = "baseline",
    compression: str = "zstd",
    level: int | None = None,
    drift_field: float | None = None,
    mesh_voltage: float | None = None,
    pressure: float | None = None,
    detector: str | None = None,
    waveforms: str = "auto",
    progress: bool | None = None,
) -> ConvertReport:
    """Write a run (a run file, an ``.aqs`` run or a capture: ``open_run``) as a feminos-daq
    ROOT file (module docstring).

    ``waveforms``: ``raw`` decodes the run file's raw datagrams (every channel the card sent, as
    feminos-daq stores), ``stored`` uses the stored waveforms, ``auto`` raw when present. The
    events of an ``.aqs`` run or a capture are always those decoded from its datagrams.
    ``progress``: a bar on stderr (``None``: when stderr is a terminal).
    """
    source, output = Path(source), Path(output)
    fill = _check_options(fill, waveforms)
    setting = _compression(compression, level)
    try:
        run = open_run(source)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None
    with run:
        if run.format == "h5" and waveforms == "raw" and not run.has_raw:
            raise ConvertError(f"{source}: no raw datagrams in the file (use --waveforms stored)")
        ROOT = load_root()
        info = run_info(
            run, detector=detector, drift_field=drift_field,
            mesh_voltage=mesh_voltage, pressure=pressure,
        )  # fmt: skip
        if run.format == "h5":
            raw = run.has_raw if waveforms == "auto" else waveforms == "raw"
            blocks = h5_blocks(run, fill, raw)
        else:
            blocks = decoded_blocks(run, fill)
        total = sum(p.stat().st_size for p in _files(run))
        report = ConvertReport(str(source), str(output))
        part = output.with_name(output.name + ".part")
        outside = 0
        show = sys.stderr.isatty() if progress is None else progress
        try:
            f = ROOT.TFile.Open(str(part), "RECREATE", "agetdaq run", setting)
            if not f or f.IsZombie():
                raise ConvertError(f"{output}: ROOT cannot create the file")
            try:
                tree = ROOT.agetdaq_root.EventsTree(f, BASKET_BYTES)
                with terminal_progress(total if show else 0, source.name) as advance:
                    for block in read_ahead(blocks):
                        _fill(tree, block)
                        report.events += len(block.time_ms)
                        outside += block.outside
                        advance(block.input_bytes)
                f.cd()
                tree.tree.Write()
                _write_run(ROOT, f, info)
            finally:
                f.Close()
            os.replace(part, output)
        finally:
            if part.exists():
                part.unlink()
    report.counters = {"fill": fill, "samples_outside_512_bins": outside, "run": info.__dict__}
    return report


def read_ahead(blocks: Iterator[EventBlock], depth: int = 2) -> Iterator[EventBlock]:
    """``blocks`` produced by a thread, at most ``depth`` ahead (bounded memory), so that reading
    and decoding go on while ROOT compresses; an error in the thread is raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for b in blocks:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, name="root-export-read", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _files(run: Run) -> list[Path]:
    files = getattr(run, "files", None)
    return list(files) if files else [run.path]


def _fill(tree: object, b: EventBlock) -> None:
    n = len(b.time_ms)
    if not n:
        return
    values = np.ascontiguousarray(b.values.reshape(-1))
    ids = np.ascontiguousarray(b.signal_ids)
    if not len(ids):  # ROOT needs a valid pointer even when nothing is read from it
        ids, values = np.zeros(1, np.uint16), np.zeros(N_BINS, np.uint16)
    tree.fill(
        n,
        np.ascontiguousarray(b.time_ms, dtype=np.uint64),
        np.ascontiguousarray(b.card_timestamp, dtype=np.uint64),
        np.ascontiguousarray(b.event_id, dtype=np.uint64),
        np.ascontiguousarray(b.event_count, dtype=np.uint32),
        np.ascontiguousarray(b.n_signals, dtype=np.int64),
        ids,
        values,
    )


def _write_run(ROOT, f: object, info: RootRunInfo) -> None:
    ROOT.agetdaq_root.write_run(
        f, info.number, info.name, info.timestamp_ms, info.detector, info.tag,
        info.drift_field_V_cm_bar, info.mesh_voltage_V, info.detector_pressure_bar,
        info.comments, info.commands,
    )  # fmt: skip
