"""The pedestal table the online processing uses, and the strip masks on top of it.

The table in force on the board: ``agetdaq pedestal --upload`` leaves the table measured after its
upload (what the card delivers from then on) in the data directory as ``pedestals.h5``
(:data:`IN_FORCE`, a run file without events: ``meta_out/pedestals``, and ``meta/source`` saying
where it came from). Every acquisition on that data directory starts with it
(:meth:`PedestalUse.load_in_force`) unless the run is given a table of its own (``--pedestals``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.datapath.pedestals import table_from_rows, table_rows
from agetdaq.readout.datapath.processing.pedestal import PedestalTable
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.schema import EVENT_DTYPE, PedestalFlag
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.run import load_pedestals
from agetdaq.readout.store.writer import RunWriter, WriterConfig, WriterError

log = logging.getLogger(__name__)

IN_FORCE = "pedestals.h5"  # in the data directory: the table in force on the board


class PedestalUse:
    """Per-channel pedestal rows in use (``rows``, PEDESTAL_DTYPE, or None before any) and the
    masked strips; both go to the processing and, on every change, to the monitor stream."""

    def __init__(
        self, processor: Processor, feed: Any, mapping: StripMapping, k_sigma: float, rst_len: int
    ) -> None:
        self.processor = processor
        self.feed = feed
        self.mapping = mapping
        self.k_sigma = k_sigma
        self.rst_len = rst_len
        self.rows: np.ndarray | None = None
        self.source = ""  # which table ``rows`` is (a file, a run; "" = none loaded)
        self.masked: set[int] = set()
        self._unmasked_noisy = processor.table.noisy.copy()

    def rows_of(self, table: PedestalTable) -> np.ndarray:
        """A pedestal run's table as per-channel rows (thresholds at ``k_sigma``)."""
        return table_rows(table, self.mapping, self.k_sigma, self.rst_len)

    def load(self, rows: np.ndarray, run_number: int, source: str = "") -> None:
        """Use a per-channel pedestal table (PEDESTAL_DTYPE rows) for the processing; ``source``
        names it (a file; default: the pedestal run ``run_number``, or a table loaded at
        start-up)."""
        if self.source and not source:
            log.info("pedestals: a table given for the runs replaces %s", self.source)
        self.rows = rows
        what = source or (f"pedestal run {run_number}" if run_number else "loaded at start-up")
        self.source = f"{what} ({len(rows)} channels, {time.strftime('%Y-%m-%d %H:%M')})"
        table = table_from_rows(rows, self.mapping.n_strips, self.processor.n_chips)
        self._unmasked_noisy = table.noisy.copy()
        self.processor.set_pedestals(table)
        self.feed.publish_pedestals(run_number, rows, self.k_sigma)

    def set_masked(self, strips: Iterable[int], masked: bool, run_number: int) -> None:
        """Mask (or unmask) strips: masked strips give no hits, like noisy ones, from the next
        batch on. Numbers outside the mapping are ignored."""
        strips = [s for s in strips if 0 <= s < self.mapping.n_strips]
        if masked:
            self.masked.update(strips)
        else:
            self.masked.difference_update(strips)
        self.apply(run_number)

    def apply(self, run_number: int) -> None:
        base = self.processor.table
        mask = np.zeros(self.mapping.n_strips, dtype=bool)
        mask[sorted(self.masked)] = True
        self.processor.set_pedestals(replace(base, noisy=self._unmasked_noisy | mask))
        if self.rows is not None:
            rows = self.rows
            masked = (rows["strip"] >= 0) & mask[np.maximum(rows["strip"], 0)]
            rows["flags"] = np.where(masked, rows["flags"] | PedestalFlag.MASKED,
                                     rows["flags"] & ~np.uint8(PedestalFlag.MASKED))  # fmt: skip
            self.feed.publish_pedestals(run_number, rows, self.k_sigma)

    def load_in_force(self, data_dir: str | Path) -> Path | None:
        """Use the table in force on the board (:data:`IN_FORCE` in the data directory) if there
        is one; its path, or None (a file that cannot be read is logged and left alone)."""
        path = Path(data_dir) / IN_FORCE
        if not path.exists():
            return None
        try:
            rows = load_pedestals(path)
            self.load(rows, 0, str(path))
        except (RunFileError, OSError, ValueError) as exc:
            log.warning("pedestal table %s not used: %s", path, exc)
            return None
        log.info("pedestals: %s (the table in force on the board)", path)
        return path


def save_in_force(data_dir: str | Path, rows: np.ndarray, source: dict[str, Any]) -> Path:
    """Write ``rows`` as the table in force on the board (:data:`IN_FORCE` in the data directory,
    replaced whole: written aside, then renamed); ``source`` says where it came from."""
    path = Path(data_dir) / IN_FORCE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    meta = {
        "run_type": "pedestal",
        "comment": "the pedestal table in force on the board (agetdaq pedestal --upload)",
        "source": json.dumps({"saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **source}),
    }
    config = WriterConfig(raw=False, swmr=False)
    try:
        writer = RunWriter(tmp, EVENT_DTYPE, meta, config, pedestals=rows)
        writer.close({"pedestals": rows})
    except WriterError as exc:
        raise OSError(f"cannot write {path}: {exc}") from exc
    tmp.replace(path)
    return path
