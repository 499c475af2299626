"""Which rows of a run file's tables can be read: all of them, or, for a file cut short, those
whose chunks lie within the file (and the events whose channels and samples do); and a scan of
every block of every table (``agetdaq inspect --check``).

A collaborator of :class:`~agetdaq.readout.store.reader.RunFile`: what it finds goes into the
run file's ``damage`` list.
"""

from __future__ import annotations

import h5py
import numpy as np

from agetdaq.readout.store import layout as L
from agetdaq.readout.store.h5open import H5_ERRORS, h5_reason


class ReadableRows:
    """The readable rows of each appended table of an open run file (see the module docstring)."""

    def __init__(self, file: h5py.File, size: int, damage: list[str]) -> None:
        self.file = file
        self.size = size  # the file's length in bytes
        self.damage = damage
        self.limits: dict[str, int] = {}  # table -> rows that can be read, where fewer than all

    def rows(self, name: str) -> int:
        if name not in self.file:
            return 0
        n = int(self.file[name].shape[0])
        return min(n, self.limits.get(name, n))

    def cut(self) -> None:
        """The file is shorter than its writer made it: limit every table to its chunks that
        lie within the file, and the events to those whose channels and samples do."""
        for name in L.APPENDED:
            try:
                if name not in self.file:
                    continue
                dset = self.file[name]
                n = int(dset.shape[0])
                first_lost = n
                for i in range(dset.id.get_num_chunks()):
                    info = dset.id.get_chunk_info(i)
                    if info.byte_offset + info.size > self.size:
                        first_lost = min(first_lost, int(info.chunk_offset[0]))
            except H5_ERRORS as exc:  # the chunk index itself lies past the cut
                self.damage.append(f"{name}: unreadable ({h5_reason(exc)})")
                self.limits[name] = 0
                continue
            if first_lost < n:
                self.limits[name] = first_lost
                self.damage.append(f"{name}: {n - first_lost} of {n} rows lost at the cut")
        if self.limits:
            self._complete_events()

    def _complete_events(self) -> None:
        n = self.rows(L.EVENTS)
        limit = n
        try:
            for name in (L.CHANNELS, L.AUX):  # rows are in event order: the last one kept
                if name in self.file and self.rows(name) < int(self.file[name].shape[0]):
                    rows = self.rows(name)
                    last = int(self.file[name][rows - 1]["event_row"]) if rows else 0
                    limit = min(limit, last)
            channels = self.file[L.CHANNELS][: self.rows(L.CHANNELS)]
            samples = min(self.rows(L.SAMPLE_BIN), self.rows(L.SAMPLE_ADC))
            if len(channels):
                end = channels["sample_start"].astype(np.int64) + channels["n_samples"]
                lost = np.flatnonzero(end > samples)
                if len(lost):
                    limit = min(limit, int(channels["event_row"][lost[0]]))
        except H5_ERRORS:
            limit = 0
        if limit < n:
            self.limits[L.EVENTS] = limit
            self.damage.append(
                f"events: the first {limit} are complete; the channels or samples of the "
                f"{n - limit} after them are lost at the cut"
            )

    def scan(self) -> list[str]:
        """Read every block of every table; the unreadable row ranges (not added to damage)."""
        found: list[str] = []
        for name in L.APPENDED:
            if name not in self.file:
                continue
            dset = self.file[name]
            step = int(dset.chunks[0]) if dset.chunks else 1 << 16
            bad: list[list[int]] = []
            reason = ""
            n = self.rows(name)
            for a in range(0, n, step):
                b = min(a + step, n)
                try:
                    dset[a:b]
                except H5_ERRORS as exc:
                    reason = reason or h5_reason(exc)
                    if bad and bad[-1][1] == a:
                        bad[-1][1] = b
                    else:
                        bad.append([a, b])
                    if "metadata" in h5_reason(exc):  # the chunk index: the rest is lost too
                        bad[-1][1] = n
                        break
            found += [f"{name}: rows {a}..{b - 1} unreadable ({reason})" for a, b in bad]
        return found
