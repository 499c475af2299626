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
whatever the input's size; ROOT fills the trees from flat arrays in compiled code (cling:
:mod:`~agetdaq.readout.store.rootwriter`). The file is written as ``<output>.part`` and renamed
when complete. Needs the ``root`` extra (ROOT's own Python package: ``pip install
'agetdaq[root]'``).
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agetdaq.readout.store.convert import ConvertError, ConvertReport
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.rootblocks import EventBlock, decoded_blocks, h5_blocks
from agetdaq.readout.store.rootwriter import (
    RootFile,
    RootRunInfo,
    compression_setting,
    load_root,
)
from agetdaq.readout.store.run import Run, open_run

FILLS = ("baseline", "zero")
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
    setting = compression_setting(compression, level)
    try:
        run = open_run(source)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None
    with run:
        if run.format == "h5" and waveforms == "raw" and not run.has_raw:
            raise ConvertError(f"{source}: no raw datagrams in the file (use --waveforms stored)")
        load_root()  # before any file is made: ConvertError without ROOT
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
            with RootFile(part, setting, output) as out:
                with terminal_progress(total if show else 0, source.name) as advance:
                    for block in read_ahead(blocks):
                        out.fill(block)
                        report.events += len(block.time_ms)
                        outside += block.outside
                        advance(block.input_bytes)
                out.finish(info)
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
