"""What the replay reads of a run file: the one place of the GUI that knows the file.

Opened with agetdaq.readout.store's ``open_run``; an agetdaq run file (.h5) is needed, for its
event rows (.aqs and captures have none: ``agetdaq convert`` makes one). Rows, channel rows and
samples are read forward in blocks (the replay moves forward; ``rewind`` for the next pass of a
loop). Nothing is recomputed: the hits of an event are the strips the DAQ stored for it in store
mode ``hits`` (the channels of its hit strips, events the software trigger kept), its samples the
raw ADC as recorded (placed on strips by the DAQ at record time, or, for events whose samples are
only in the raw datagram record, by the run's own mapping).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from agetdaq.readout.analysis.calibsettings import CalibFeedSettings
from agetdaq.readout.config import ConfigError, build
from agetdaq.readout.schema import CHANNEL_DTYPE, SAMPLES_IN_RAW
from agetdaq.readout.store import RunFileError, open_run
from agetdaq.readout.store import layout as L

CHANNEL_BLOCK = 16384  # channel rows read at a time
MIN_SAMPLES = 512  # time bins of an event's waveform array at least (the AGET's 512 cells)

__all__ = ["RecordedRun", "RunFileError"]


class RecordedRun:
    """A run file opened for replay (raises RunFileError when it cannot be read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.run = open_run(self.path)
        if self.run.format != "h5":
            self.run.close()
            raise RunFileError(f"{self.path}: a replay needs an agetdaq run file (.h5) with its "
                               f"event rows; make one with 'agetdaq convert'")  # fmt: skip
        self.file = self.run.runfile.file
        self.meta = self.run.metadata
        self.config = _toml(self.meta.get("config", ""))
        self.mapping = self.run.mapping
        daq = self.config.get("daq", {}) if isinstance(self.config.get("daq"), dict) else {}
        # the DAQ's default store mode is "hits": the stored strips of an event are its hits
        self.store_mode = str(daq.get("store_waveforms", "hits"))
        self._buf = np.zeros(0, CHANNEL_DTYPE)
        self._channels = self.file[L.CHANNELS] if L.CHANNELS in self.file else self._buf[:0]
        self.rewind()

    def close(self) -> None:
        self.run.close()

    def __enter__(self) -> RecordedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what the run was -----------------------------------------------------------------------

    @property
    def run_number(self) -> int:
        return self.run.info.run_number

    @property
    def run_type(self) -> str:
        return self.run.info.run_type

    @property
    def source(self) -> str:
        return self.meta.get("detector") or self.path.stem

    @property
    def threshold_adc(self) -> float | None:
        """The DAQ's threshold on the event energy (processing.trigger.energy_min), if set."""
        trigger = self.config.get("processing", {})
        trigger = trigger.get("trigger", {}) if isinstance(trigger, dict) else {}
        value = trigger.get("energy_min", 0.0) if isinstance(trigger, dict) else 0.0
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def calib_settings(self) -> CalibFeedSettings:
        """The DAQ's ``[calibration]`` table of the run (defaults where the run has none)."""
        table = self.config.get("calibration")
        if not isinstance(table, dict):
            return CalibFeedSettings()
        try:
            return build(CalibFeedSettings, table, "calibration")
        except ConfigError:
            return CalibFeedSettings()

    @property
    def hits_recorded(self) -> bool:
        return self.store_mode == "hits"

    @property
    def n_events(self) -> int:
        return self.run.n_events

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.run.rows(start, stop)

    def pedestals(self) -> np.ndarray | None:
        return self.run.pedestals

    def status_snapshots(self) -> list[tuple[float, dict]]:
        """The DAQ's status messages recorded during the run, (unix time, fields) in order."""
        out = []
        for d in self.run.status():
            t = d.get("time")
            if isinstance(t, (int, float)):
                out.append((float(t), d))
        return sorted(out, key=lambda item: item[0])

    # ---- channels, hits and samples, read forward ----------------------------------------------

    def rewind(self) -> None:
        """Start reading channel rows from the first event again."""
        self._next_ch = 0
        self._buf = np.zeros(0, CHANNEL_DTYPE)

    def channels(self, stop: int) -> np.ndarray:
        """The channel rows of the event rows before ``stop`` not yet read (rows are in event
        order; call with increasing ``stop``)."""
        table = self._channels
        n = int(table.shape[0])
        while self._next_ch < n and (not len(self._buf) or self._buf["event_row"][-1] < stop):
            more = table[self._next_ch : self._next_ch + CHANNEL_BLOCK]
            self._next_ch += len(more)
            self._buf = np.concatenate((self._buf, more)) if len(self._buf) else more
        cut = int(np.searchsorted(self._buf["event_row"], stop))
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out

    def hits(self, start: int, n: int, ch: np.ndarray) -> np.ndarray | None:
        """(n, n_strips) bool: the stored strips of event rows ``start .. start + n`` (their
        channel rows ``ch``), when the store mode records hits; None otherwise."""
        if not self.hits_recorded:
            return None
        hit = np.zeros((n, self.mapping.n_strips), bool)
        ch = ch[(ch["strip"] >= 0) & (ch["strip"] < self.mapping.n_strips)]
        hit[ch["event_row"].astype(np.int64) - start, ch["strip"].astype(np.int64)] = True
        return hit

    def samples(
        self, row: int, flags: int, processed: bool, ch: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(raw ADC on strips float32 (n_strips, T), its hit strips or None) of event row ``row``
        (build ``flags``; ``processed`` online or not) as recorded; ``ch``: channel rows that
        include the event's; None when nothing is stored."""
        if flags & SAMPLES_IN_RAW:
            wf = _on_strips(self.run.strip_traces(row), self.mapping.n_strips)
            return None if wf is None else (wf, None)
        mine = ch[ch["event_row"] == row]
        if not len(mine):
            return None
        s0 = int(mine["sample_start"].min())
        s1 = int((mine["sample_start"] + mine["n_samples"]).max())
        bins = self.file[L.SAMPLE_BIN][s0:s1]
        adc = self.file[L.SAMPLE_ADC][s0:s1]
        a = mine["sample_start"].astype(np.int64) - s0
        b = a + mine["n_samples"].astype(np.int64)
        traces = [(int(c["strip"]), bins[i:j], adc[i:j]) for c, i, j in zip(mine, a, b)]
        wf = _on_strips(traces, self.mapping.n_strips)
        if wf is None:
            return None
        hits = None
        if self.hits_recorded and processed:  # an unprocessed event has no hits
            hits = np.zeros(self.mapping.n_strips, bool)
            s = mine["strip"].astype(np.int64)
            hits[s[(s >= 0) & (s < len(hits))]] = True
        return wf, hits


def _on_strips(
    traces: list[tuple[int, np.ndarray, np.ndarray]], n_strips: int
) -> np.ndarray | None:
    """(n_strips, T) float32 of the recorded ADC of (strip, time bins, ADC) traces; traces off
    the strips (FPN, unmapped: strip < 0) are left out, unrecorded samples are 0."""
    traces = [t for t in traces if 0 <= t[0] < n_strips and len(t[1])]
    if not traces:
        return None
    top = max(int(np.max(b)) for _, b, _ in traces)
    wf = np.zeros((n_strips, max(MIN_SAMPLES, top + 1)), np.float32)
    for strip, bins, adc in traces:
        wf[strip, np.asarray(bins, np.int64)] = adc
    return wf


def _toml(text: str) -> dict:
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, TypeError):
        return {}
