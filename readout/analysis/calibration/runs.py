"""Run files -> the per-event columns the calibration engine needs (docs/CALIBRATION.md).

The events table of a run file (docs/FILE_FORMAT.md, read with ``open_run``) is read in chunks and
turned into the
calibration contract (``energy_adc, n_clusters_x/y, size_x/y, balance, x_mm, y_mm, time_s``).
``time_s`` is unix time: the card timestamp (20 ns ticks) anchored on the host clock of the run
(``time_ns``), or the host clock alone after a timestamp restart. Several files are read in the
time order of their first event, whatever order they were given in.

:class:`EventFilter` says which rows may count as X-rays at all; a rejected row is still fed
(it counts in a slice's ``n_events``) with ``energy_adc = NaN``, which no selection accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.analysis.calibration.fit import FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.selection import select_xrays
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.trend import TrendConfig
from agetdaq.readout.analysis.classification import SelectionConfig, classify
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load_table
from agetdaq.readout.schema import BOARD_RESTART, NOT_PROCESSED, SUMMARY_FIELDS, EventClass
from agetdaq.readout.store.errors import RunFileError
from agetdaq.readout.store.run import Run, open_run

TICK_S = 20e-9  # card timestamp unit (50 MHz clock)
CHUNK_ROWS = 200_000

# the calibration contract names its columns as the stream's ``summary`` does (schema)
_KEYS = (
    "energy_adc",
    "n_clusters_x",
    "n_clusters_y",
    "size_x",
    "size_y",
    "balance",
    "x_mm",
    "y_mm",
)
_COLUMNS = {key: SUMMARY_FIELDS[key] for key in _KEYS}


class RunInputError(ValueError):
    """A run file that cannot be used for the calibration (missing, unreadable, no features)."""


def _calib_shape() -> SelectionConfig:
    return SelectionConfig(xray_max_sigma_mm=0.7)


@dataclass(frozen=True)
class EventFilter:
    """Which event-table rows may reach the X-ray selection (TOML ``[calibration.events]``, the
    class cuts in ``[calibration.shape]``, keys of
    ``agetdaq.readout.analysis.classification.SelectionConfig``).

    - rows the DAQ did not process (shed under load) never count;
    - ``require_trigger``: the DAQ's software trigger (its energy threshold) must have kept the
      event, so the spectrum has the DAQ's threshold edge;
    - ``reclassify``: the processing class is recomputed with ``shape`` (default: the online
      cuts with the cluster RMS width capped at 0.7 mm instead of 0.9, which rejects short muon
      track pieces); False uses the class stored by the DAQ;
    - ``edge_margin_mm``: the centroid must be this far inside the strip area (half side
      ``half_size_mm``): a cloud on the border loses charge off the last strip.
    """

    require_trigger: bool = True
    reclassify: bool = True
    edge_margin_mm: float = 1.0
    half_size_mm: float = 30.0
    shape: SelectionConfig = field(default_factory=_calib_shape)

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "calibration"
    ) -> EventFilter:
        values = dict(load_table(source, f"{table}.events"))
        shape = {**dataclasses.asdict(_calib_shape()), **load_table(source, f"{table}.shape")}
        values["shape"] = config_from_dict(SelectionConfig, shape, f"{table}.shape")
        return config_from_dict(cls, values, f"{table}.events")

    def accept(self, rows: np.ndarray) -> np.ndarray:
        """bool per row: may this event count as an X-ray?"""
        ok = (rows["build_flags"] & NOT_PROCESSED) == 0
        if self.require_trigger:
            ok &= rows["trig"].astype(bool)
        cls = classify(rows, self.shape) if self.reclassify else rows["cls"]
        ok &= cls == EventClass.XRAY
        if self.edge_margin_mm > 0:
            lim = self.half_size_mm - self.edge_margin_mm
            with np.errstate(invalid="ignore"):
                ok &= (np.abs(rows["x_mm"]) <= lim) & (np.abs(rows["y_mm"]) <= lim)
        return ok


def calibration_events(
    rows: np.ndarray, time_s: np.ndarray, event_filter: EventFilter | None = None
) -> dict[str, np.ndarray]:
    """Calibration columns of event-table rows; ``energy_adc`` is NaN where the filter rejects."""
    names = rows.dtype.names or ()
    missing = [f for f in ("build_flags", "trig", "cls", *_COLUMNS.values()) if f not in names]
    if missing:
        raise RunInputError(f"event rows lack the field(s) {missing}")
    events = {key: np.asarray(rows[name]) for key, name in _COLUMNS.items()}
    energy = events["energy_adc"].astype(np.float64)
    energy[~(event_filter or EventFilter()).accept(rows)] = np.nan
    events["energy_adc"] = energy
    events["time_s"] = np.asarray(time_s, dtype=np.float64)
    return events


@dataclass
class RunSource:
    """One run file, checked and described without reading its events."""

    path: Path
    n_events: int
    run_number: str
    run_type: str
    clock_offset_s: float  # unix time of card tick 0 (from the host clock of the first events)
    first_time_s: float
    threshold_adc: float | None  # [processing.trigger] energy_min of the run, when > 0

    @property
    def name(self) -> str:
        return self.path.name


def _open(path: Path) -> Run:
    if not path.is_file():
        raise RunInputError(f"{path}: no such file")
    try:
        return open_run(path)
    except RunFileError as exc:
        raise RunInputError(str(exc)) from exc
    except OSError as exc:
        raise RunInputError(f"{path}: {exc}") from exc


def _threshold_from_config(text: str) -> float | None:
    try:
        value = load_table(text, "processing.trigger").get("energy_min", 0.0)
    except (ValueError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def describe_run(path: str | Path) -> RunSource:
    """Open a run file and read what the calibration needs to know; RunInputError if unusable."""
    path = Path(path)
    f = _open(path)
    try:
        if f.format != "h5":
            raise RunInputError(f"{path}: an {f.format} file has no processing features")
        meta = f.metadata
        n = f.n_events
        names = f.columns
        missing = [c for c in ("timestamp", "time_ns", "build_flags", "trig", *_COLUMNS.values())
                   if c not in names]  # fmt: skip
        if missing:
            raise RunInputError(
                f"{path}: the events table lacks {missing} (no processing features)"
            )
        head = f.rows(0, min(n, 1000))
        created = f.info.start_unix
    except (KeyError, OSError, RunFileError) as exc:
        raise RunInputError(f"{path}: unreadable events table: {exc}") from exc
    finally:
        f.close()
    offset = clock_offset(head, created)
    first = offset + float(head["timestamp"][0]) * TICK_S if len(head) else created
    return RunSource(
        path=path,
        n_events=n,
        run_number=meta.get("run_number", ""),
        run_type=meta.get("run_type", ""),
        clock_offset_s=offset,
        first_time_s=first,
        threshold_adc=_threshold_from_config(meta.get("config", "")),
    )


def clock_offset(rows: np.ndarray, fallback_s: float = 0.0) -> float:
    """Unix time of card tick 0: median of host time minus card time over the rows."""
    host = rows["time_ns"].astype(np.float64) * 1e-9 if len(rows) else np.zeros(0)
    use = host > 0
    if not use.any():
        return fallback_s
    return float(np.median(host[use] - rows["timestamp"][use].astype(np.float64) * TICK_S))


def open_runs(paths: list[str | Path]) -> list[RunSource]:
    """Describe every file (all problems reported together), in time order of their first event."""
    sources, problems = [], []
    for p in paths:
        try:
            sources.append(describe_run(p))
        except RunInputError as exc:
            problems.append(str(exc))
    if problems:
        raise RunInputError("; ".join(problems))
    return sorted(sources, key=lambda s: s.first_time_s)


class RunClock:
    """Unix event times of one run: card timestamp x 20 ns + the host-clock offset found on the
    first rows; after a timestamp restart (board reboot) the host clock (``time_ns``) alone."""

    def __init__(self, offset_s: float | None = None) -> None:
        self.offset_s = offset_s
        self.host_only = False
        self._last_ts = -1

    def times(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0)
        ts = rows["timestamp"].astype(np.int64)
        if self.offset_s is None:
            self.offset_s = clock_offset(rows)
        restart = np.any((rows["build_flags"] & BOARD_RESTART) != 0)
        if ts[0] < self._last_ts or restart or np.any(np.diff(ts) < 0):
            self.host_only = True
        self._last_ts = int(ts[-1])
        if self.host_only:
            return rows["time_ns"].astype(np.float64) * 1e-9
        return self.offset_s + ts.astype(np.float64) * TICK_S


class RunReader:
    """Reads one run's events in chunks as calibration columns, with unix times."""

    def __init__(self, source: RunSource, event_filter: EventFilter | None = None) -> None:
        self.source = source
        self.event_filter = event_filter or EventFilter()
        self.clock = RunClock(source.clock_offset_s)

    def chunks(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[dict[str, np.ndarray]]:
        with _open(self.source.path) as f:
            for rows in f.row_blocks(block=chunk_rows):
                yield calibration_events(rows, self.clock.times(rows), self.event_filter)


class SliceBuffer:
    """The selected X-rays of a GainTrend's open slice, so that when ``feed`` closes slices
    their own events can be handed out: a closed point owns the first ``n_events`` events fed
    since its slice opened (GainTrend consumes events in order)."""

    COLUMNS = ("energy_adc", "x_mm", "y_mm")

    def __init__(self) -> None:
        self._seen = 0
        self._pos = np.zeros(0, np.int64)
        self._cols = {k: np.zeros(0) for k in self.COLUMNS}

    def add(self, events: dict[str, np.ndarray], mask: np.ndarray) -> None:
        """Record the events of a batch about to be fed (``mask``: the selected ones)."""
        idx = np.flatnonzero(mask)
        self._pos = np.concatenate([self._pos, self._seen + idx])
        for k in self.COLUMNS:
            self._cols[k] = np.concatenate([self._cols[k], np.asarray(events[k])[idx]])
        self._seen += len(mask)

    def take(self, n_events: int) -> dict[str, np.ndarray]:
        """The selected events among the next ``n_events`` fed (those of a closed slice)."""
        mine = self._pos < n_events
        out = {k: v[mine] for k, v in self._cols.items()}
        self._pos = self._pos[~mine] - n_events
        self._cols = {k: v[~mine] for k, v in self._cols.items()}
        self._seen -= n_events
        return out


def selected_spectrum(
    events: dict[str, np.ndarray], config: TrendConfig, spectrum: Spectrum | None = None
) -> Spectrum:
    """Fill (or create) a spectrum with the trend binning from the X-ray-like events."""
    spectrum = spectrum or Spectrum(config.n_bins, config.adc_max)
    mask = select_xrays(events, config.selection) if config.select else slice(None)
    energy = events["energy_adc"][mask]
    spectrum.fill(energy[np.isfinite(energy)])
    return spectrum


@dataclass
class Reference:
    """The reference run: its spectrum and fit (the gain of ``fit`` is the reference gain)."""

    source: RunSource
    spectrum: Spectrum
    fit: FitResult


def reference_from_run(
    path: str | Path,
    config: TrendConfig | None = None,
    event_filter: EventFilter | None = None,
) -> Reference:
    """Fit all X-ray-like events of a reference run; RunInputError if the fit fails."""
    config = config or TrendConfig()
    source = describe_run(path)
    spectrum = Spectrum(config.n_bins, config.adc_max)
    for events in RunReader(source, event_filter).chunks():
        selected_spectrum(events, config, spectrum)
    fit = fit_spectrum(spectrum, config.fit)
    if not fit.ok:
        raise RunInputError(f"{source.path}: reference fit failed: {fit.reason}")
    return Reference(source, spectrum, fit)


def threshold_of(sources: list[RunSource]) -> tuple[float | None, bool]:
    """The DAQ threshold (ADC) shared by the runs, and whether all runs agree."""
    values = {s.threshold_adc for s in sources}
    return (sources[0].threshold_adc if sources else None), len(values) <= 1
