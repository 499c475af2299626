"""What a run leaves on disk: its run file (opened with the run's metadata, closed with its end
record) and its ``start`` / ``end`` lines in the data directory's run log."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agetdaq import __version__
from agetdaq.readout.acquisition.limits import RunInfo
from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.writer import RunWriter, WriterConfig, WriterError


class RunRecorder:
    """The run file of the run in progress (:attr:`writer`, None between runs) and the run log.
    ``identity``: the metadata every run file of this engine carries (detector, board, settings,
    mapping)."""

    def __init__(self, runlog: RunLog, settings: WriterConfig, identity: dict[str, str]) -> None:
        self.runlog = runlog
        self.settings = settings
        self.identity = identity
        self.writer: RunWriter | None = None
        # writers whose file HDF5 could not close (a full disk): kept, because freeing them
        # crashes the HDF5 library; the owner then exits without teardown (cli.daq_common.leave)
        self.abandoned: list[RunWriter] = []

    def allocate(self, run_type: str, output: str | Path | None) -> tuple[int, Path]:
        """A new run number (atomic across processes sharing the data directory) and its file:
        ``output`` or the data directory's name for it (its folder made)."""
        number = self.runlog.allocate_run_number()
        path = Path(output) if output else self.runlog.run_path(number, run_type)
        path.parent.mkdir(parents=True, exist_ok=True)
        return number, path

    def open(self, run: RunInfo, script: str, pedestals: np.ndarray | None) -> RunWriter:
        """Create the run file (WriterError if it cannot be) and log the run's start."""
        meta = {
            "run_number": str(run.number),
            "run_type": run.run_type,
            "comment": run.comment,
            "detector": self.identity["detector"],
            "board": self.identity["board"],
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "software_version": __version__,
            "script": script,
            "config": self.identity["config"],
            "mapping": self.identity["mapping"],
        }
        self.writer = RunWriter(run.path, EVENT_DTYPE, meta, self.settings, pedestals=pedestals)
        self.runlog.append({"event": "start", "run": run.number, "type": run.run_type,
                            "comment": run.comment, "file": run.path})  # fmt: skip
        return self.writer

    def close(self, final: dict) -> str | None:
        """Close the run file with its end record; the writer's error if that failed (the file
        is then released, its writer kept in :attr:`abandoned`)."""
        writer, self.writer = self.writer, None  # released whatever happens to it
        try:
            if writer is not None:
                writer.close(final)
        except WriterError as exc:
            self.abandoned.append(writer)
            return str(exc)
        finally:
            del writer
        return None

    def log_end(self, run: RunInfo, events: int) -> None:
        self.runlog.append(
            {"event": "end", "run": run.number, "reason": run.stop_reason, "events": events}
        )
