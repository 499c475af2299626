"""``open_run(path)``: one way to read any run, whatever file it is in.

* ``.h5`` -- an agetdaq run file (docs/FILE_FORMAT.md): event rows, stored waveforms, raw
  datagrams, status snapshots, configuration in and out (:class:`~.h5run.H5Run`);
* ``.aqs`` -- a legacy feminos-daq run with its ``-NNN`` sub-run files (:class:`~.decoded.AqsRun`);
* ``.pcap`` / ``.pcapng`` -- a capture of board traffic (:class:`~.decoded.PcapRun`).

The format comes from the first bytes (the name only when they do not tell). Every run answers
the same small API (:class:`Run`); what a format does not have is empty, never an error: an
.aqs run has no pedestal table, an event row of a decoded file has no features (build flag
NOT_PROCESSED). Anything unreadable raises a :class:`RunFileError` whose message names the file.
"""

from __future__ import annotations

import contextlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from agetdaq.protocol.event import Event
from agetdaq.protocol.mapping import MappingError, StripMapping
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.errors import RunFileError, UnknownFormatError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = ("h5", "aqs", "pcap")
SUFFIXES = {"h5": (".h5", ".hdf5"), "aqs": (".aqs",), "pcap": (".pcap", ".pcapng")}
BLOCK_ROWS = 65_536  # event rows per block of Run.row_blocks
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # meta/start_time


@dataclass(frozen=True)
class RunInfo:
    """What a run is, in a few fields (from its metadata; empty or 0 when the file does not say)."""

    path: Path
    format: str  # "h5", "aqs" or "pcap"
    run_number: int
    run_type: str
    comment: str
    detector: str
    start_unix: float  # run start, unix seconds (0.0: unknown)
    format_version: int | None  # agetdaq run files only
    software_version: str
    closed: bool  # False: a run file whose writer has not closed it (running, or crashed)


def start_unix(text: str, fallback: float = 0.0) -> float:
    """Unix time of a ``meta/start_time`` text (``%Y-%m-%dT%H:%M:%S%z``), else ``fallback``."""
    try:
        return datetime.strptime(text, _TIME_FORMAT).timestamp()
    except (ValueError, OverflowError):
        return fallback


def start_text(t: float) -> str:
    """``meta/start_time`` text of a unix time (local time zone)."""
    import time

    return time.strftime(_TIME_FORMAT, time.localtime(t))


class Run(ABC):
    """One run, read-only, whatever its file format (see the module docstring)."""

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notices: list[str] = []  # worth knowing (e.g. not closed by its writer)
        self.damage: list[str] = []  # something of the file is lost or unreadable

    # ---- what the run is ----------------------------------------------------------------------

    @property
    @abstractmethod
    def info(self) -> RunInfo:
        """Run number, type, start time ... in a few fields."""

    @property
    @abstractmethod
    def metadata(self) -> dict[str, str]:
        """Configuration in, as text (an agetdaq run file's ``meta``; for the other formats
        what a conversion to a run file records)."""

    @property
    def final(self) -> dict[str, str]:
        """Configuration out (``meta_out``: stop reason, counters); empty when there is none."""
        return {}

    @property
    def mapping(self) -> StripMapping:
        """The run's own strip mapping (``meta/mapping``), else the default one."""
        text = self.metadata.get("mapping", "")
        if text.strip():
            with contextlib.suppress(MappingError):
                return StripMapping.from_text(text, f"{self.path}:meta/mapping")
        return StripMapping.default()

    @property
    def rst_len(self) -> int:
        """The card's ``rst_len`` of the run (``[daq] rst_len`` of ``meta/config``), else 0."""
        try:
            daq = tomllib.loads(self.metadata.get("config", "")).get("daq", {})
            value = int(daq.get("rst_len", 0)) if isinstance(daq, dict) else 0
        except (tomllib.TOMLDecodeError, TypeError, ValueError):
            return 0
        return value if value in (0, 1) else 0

    def strip_lut(self) -> np.ndarray:
        """[card, chip, DAQ channel] -> global strip or -1, with the run's mapping and rst_len."""
        return self.mapping.lut(self.rst_len)

    @property
    def pedestals(self) -> np.ndarray | None:
        """The pedestal table in use at run start (schema.PEDESTAL_DTYPE rows), if any."""
        return None

    @property
    def measured_pedestals(self) -> np.ndarray | None:
        """The pedestal table the run measured (pedestal runs), if any."""
        return None

    def status(self) -> list[dict]:
        """The counter snapshots recorded during the run (each with its ``time``, unix s)."""
        return []

    # ---- events ---------------------------------------------------------------------------------

    @property
    @abstractmethod
    def n_events(self) -> int:
        """Number of events (a decoded file is read through once to count them)."""

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the event-table columns the rows have."""
        return EVENT_DTYPE.names

    @abstractmethod
    def rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Event-table rows ``start:stop`` (schema.EVENT_DTYPE, or the file's own columns)."""

    def row_blocks(
        self, start: int = 0, stop: int | None = None, block: int = BLOCK_ROWS
    ) -> Iterator[np.ndarray]:
        """The rows ``start:stop`` in blocks of at most ``block`` rows."""
        stop = self.n_events if stop is None else min(stop, self.n_events)
        for a in range(start, stop, block):
            yield self.rows(a, min(stop, a + block))

    @abstractmethod
    def events(self, start: int = 0, stop: int | None = None, raw: bool = False) -> Iterator[Event]:
        """Events ``start:stop`` with their waveforms (raw ADC as received). ``raw``: every
        channel the card sent, decoded from the raw datagrams where the file keeps them."""

    def event(self, index: int) -> Event:
        """One event with its waveforms; IndexError when there is no such event."""
        if index < 0:
            raise IndexError(f"event {index}: events count from 0")
        found = next(self.events(index, index + 1), None)
        if found is None:
            raise IndexError(f"event {index} not in {self.path} ({self.n_events} events)")
        return found

    def strip_traces(self, index: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(global strip or -1, time bins, raw ADC) of every channel of one event."""
        lut = self.strip_lut()
        out = []
        for c in self.event(index).channels:
            ok = c.card < lut.shape[0] and c.chip < lut.shape[1] and c.channel < lut.shape[2]
            out.append((int(lut[c.card, c.chip, c.channel]) if ok else -1, c.bins, c.adc))
        return out

    def card_events(self) -> Iterator[Event]:
        """Every event as the card sent it, in stream order (for comparing files)."""
        return self.events()

    def verify(self) -> list[str]:
        """Read the whole file; what cannot be read is in :attr:`damage` (and returned)."""
        for _ in self.events():
            pass
        return list(self.damage)

    # ---- datagrams ------------------------------------------------------------------------------

    @property
    def n_datagrams(self) -> int:
        """Number of raw datagrams the file keeps (0: none)."""
        return 0

    @property
    def has_raw(self) -> bool:
        return self.n_datagrams > 0

    @property
    def raw_bytes(self) -> int:
        """Total length of the raw datagrams."""
        return sum(len(d) for d in self.datagrams())

    def datagrams(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Raw data datagrams ``start:stop``, lead word included, as the card sent them."""
        return iter(())

    def counters(self) -> dict[str, dict[str, int]]:
        """What the last pass over the file counted: ``decoder_errors`` and ``source`` (the
        reader's own counters: frames, markers, skipped packets ...)."""
        return {"decoder_errors": {}, "source": {}}

    # ---- life -----------------------------------------------------------------------------------

    def refresh(self) -> None:  # noqa: B027 - only a run file being written grows
        """See what a live writer appended since opening (run files; nothing for the others)."""

    def close(self) -> None:  # noqa: B027 - nothing to release for most formats
        """Release the file."""

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sniff_format(path: Path) -> str:
    """'h5', 'pcap' or 'aqs', from the first bytes, else from the file name."""
    from agetdaq.protocol.aqs import parse_header
    from agetdaq.protocol.pcap import is_capture

    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if is_capture(path):
        return "pcap"
    suffix = path.suffix.lower()
    for fmt in ("aqs", "h5"):
        if suffix in SUFFIXES[fmt]:
            return fmt
    try:
        parse_header(head)
    except ValueError:
        raise UnknownFormatError(f"{path}: not an .aqs, pcap/pcapng or HDF5 run file") from None
    return "aqs"


def open_run(
    path: str | Path, *, port: int | None = None, board: tuple[str, int] | None = None
) -> Run:
    """Open a run file (.h5), an .aqs run or a capture (.pcap/.pcapng) for reading.

    ``port`` / ``board`` choose the board in a capture: the UDP port it sends from, or its
    (address, port) (port 0: any); by default every source that sends board frames.
    """
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: no such file")
    if not path.is_file():
        raise RunFileError(f"{path}: not a regular file")
    try:
        fmt = sniff_format(path)
    except OSError as exc:
        raise RunFileError(f"{path}: {exc.strerror or exc}") from exc
    if fmt == "h5":
        from agetdaq.readout.store.h5run import H5Run

        return H5Run(path)
    from agetdaq.readout.store.decoded import AqsRun, PcapRun

    if fmt == "pcap":
        return PcapRun(path, port=port, board=board)
    return AqsRun(path)


def load_pedestals(path: str | Path) -> np.ndarray:
    """The pedestal table a pedestal run measured (to use in the next runs)."""
    with open_run(path) as run:
        rows = run.measured_pedestals
    if rows is None:
        raise RunFileError(f"{path} holds no pedestal table (meta_out/pedestals)")
    return rows
