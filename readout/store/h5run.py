"""An agetdaq run file (.h5) behind the :class:`~agetdaq.readout.store.run.Run` API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.event import Event
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.errors import DamagedRunFileError
from agetdaq.readout.store.reader import H5_ERRORS, RunFile, h5_reason
from agetdaq.readout.store.run import Run, RunInfo, start_unix

DECODE_BATCH = 1024  # raw datagrams per decoder call


class H5Run(Run):
    """A run file, also while it is being written (``refresh`` sees the rows added since)."""

    format = "h5"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.runfile = RunFile(path)  # the tables themselves, for direct access
        self.notices, self.damage = self.runfile.notices, self.runfile.damage
        self._errors: dict[str, int] = {}
        self._was_closed = False
        self._version = self.runfile.format_version
        try:
            self._attrs = self.runfile.attrs()
        except H5_ERRORS as exc:
            self._attrs = {}
            self.damage.append(f"root attributes unreadable ({h5_reason(exc)})")
        try:
            self._meta = self.runfile.metadata()
        except DamagedRunFileError as exc:
            self._meta = {}
            self.damage.append(str(exc).removeprefix(f"{path}: "))

    @property
    def info(self) -> RunInfo:
        m, attrs = self._meta, self._attrs
        number = m.get("run_number", "").strip()
        return RunInfo(
            path=self.path,
            format=self.format,
            run_number=int(number) if number.isdigit() else 0,
            run_type=m.get("run_type", ""),
            comment=m.get("comment", ""),
            detector=m.get("detector", ""),
            start_unix=start_unix(m.get("start_time", ""), float(attrs.get("created_unix", 0.0))),
            format_version=self._version,
            software_version=str(attrs.get("software_version", m.get("software_version", ""))),
            closed=self._closed(),
        )

    def _closed(self) -> bool:
        """Did the writer close the file (end-of-run record written)? Known while it is open."""
        with contextlib.suppress(ValueError, KeyError, RuntimeError):
            self._was_closed = self.runfile.closed
        return self._was_closed

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    @property
    def final(self) -> dict[str, str]:
        return self.runfile.final()

    @property
    def pedestals(self) -> np.ndarray | None:
        return self.runfile.pedestals()

    @property
    def measured_pedestals(self) -> np.ndarray | None:
        return self.runfile.pedestals_out()

    def status(self) -> list[dict]:
        return self.runfile.status()

    def refresh(self) -> None:
        """See the rows a live writer appended since opening."""
        self.runfile.refresh()

    @property
    def n_events(self) -> int:
        return self.runfile.n_events

    @property
    def columns(self) -> tuple[str, ...]:
        return self.runfile.file[L.EVENTS].dtype.names or ()

    def rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.runfile.events(start, stop)

    def events(self, start: int = 0, stop: int | None = None, raw: bool = False) -> Iterator[Event]:
        return self.runfile.iter_events(start, stop, raw=raw)

    def event(self, index: int) -> Event:
        return self.runfile.event(index)

    def card_events(self) -> Iterator[Event]:
        """Every event decoded from the raw datagrams (those the builder dropped too); the
        stored events when the file keeps no raw datagrams."""
        if not self.has_raw:
            yield from self.events()
            return
        decoder = StreamDecoder(check_seq=True, has_lead=True)
        n = self.n_datagrams
        for a in range(0, n, DECODE_BATCH):
            batch = list(self.runfile.datagrams(a, a + DECODE_BATCH))
            yield from decoder.decode(*pack_datagrams(batch)).events()
        yield from decoder.flush().events()
        self._errors = decoder.error_counts()

    @property
    def n_datagrams(self) -> int:
        return self.runfile.n_datagrams

    @property
    def raw_bytes(self) -> int:
        return self.runfile.raw_bytes

    def datagrams(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        return self.runfile.datagrams(start, stop)

    def verify(self) -> list[str]:
        return self.runfile.verify()

    def counters(self) -> dict[str, dict[str, int]]:
        return {"decoder_errors": dict(self._errors), "source": {}}

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already closed, or the file vanished
            self.runfile.close()
