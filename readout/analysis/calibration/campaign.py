"""A calibration campaign over run files: the trend, the drift-corrected gain map, the
drift-corrected spectrum of the last run and the spectra of the slices that were not good
points. What ``agetdaq calibrate`` computes (outputs.py writes it).

X-rays next to a known bad strip lose charge on it and are left out of everything (counted).
Every good point (status ok or flagged, see trendpoint.py) corrects its own X-rays by its
``gain_rel``: they fill the gain map and, for the last run,
a spectrum scaled to that run's median gain, which is fitted over the whole range. X-rays of
split slices follow their parts; X-rays of failed slices and failed parts are left out and
counted. The gain map's spread is then removed from every point's intrinsic resolution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.fit import FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.gainmap import GainMap, GainMapConfig, GainMapResult
from agetdaq.readout.analysis.calibration.judge import SliceJudge, SliceXrays
from agetdaq.readout.analysis.calibration.runs import (
    EventFilter,
    RunInputError,
    RunReader,
    RunSource,
    SliceBuffer,
    describe_run,
)
from agetdaq.readout.analysis.calibration.selection import select_xrays
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.trend import GainTrend, TrendConfig
from agetdaq.readout.analysis.calibration.trendpoint import TrendPoint, expand

MAX_SLICE_SPECTRA = 24  # spectra kept of slices that were not good points


@dataclass
class SliceSpectrum:
    """The spectrum of a slice that was split or refused, with its one-line fit."""

    point: TrendPoint
    run: str
    spectrum: Spectrum


@dataclass
class Outcome:
    """Everything the analysis found (what the output files are written from)."""

    points: list[TrendPoint] = field(default_factory=list)  # one per slice
    point_runs: list[str] = field(default_factory=list)
    gainmap: GainMapResult | None = None
    run_spectrum: Spectrum | None = None  # last run, drift-corrected to its median gain
    run_fit: FitResult | None = None
    run_gain_rel: float = math.nan  # the gain (relative) that spectrum is scaled to
    slice_spectra: list[SliceSpectrum] = field(default_factory=list)
    events: int = 0
    candidates: int = 0  # events the EventFilter let through
    xrays: int = 0  # selected X-rays used (not next to a bad strip)
    excluded: int = 0  # selected X-rays next to a known bad strip (left out)
    map_dropped: int = 0  # X-rays of slices (or parts) that were not good points
    map_rms: float = 0.0  # relative gain spread of the map (statistics removed)
    reference: TrendPoint | None = None  # the judged reference run, if any

    @property
    def rows(self) -> list[tuple[str, TrendPoint]]:
        """(run, point) with split slices replaced by their parts, in time order."""
        return [(r, q) for r, p in zip(self.point_runs, self.points) for q in expand([p])]


def correct_xrays(point: TrendPoint, xrays: dict[str, np.ndarray]):
    """Yield (good point, its X-rays) for a closed slice's X-rays: the slice's own or, for a
    split slice, each part's share (parts hold consecutive X-rays). Not-good pieces yield their
    X-rays with ``None``."""
    pieces = point.parts if point.status == "split" and point.parts else [point]
    start = 0
    for piece in pieces:
        n = piece.n_xrays
        mine = {k: v[start : start + n] for k, v in xrays.items()}
        start += n
        yield (piece if piece.good and piece.gain_rel > 0 else None), mine


class DriftCorrectedMap:
    """Fills a gain map with each X-ray scaled by the fitted gain of its slice (or part)."""

    def __init__(self, config: GainMapConfig, bad_strips: BadStrips | None = None) -> None:
        self.map = GainMap(dataclasses.replace(config, select=False), bad_strips)
        self.buffer = SliceBuffer()
        self.dropped = 0  # X-rays of slices or parts that were not good points

    def close(self, point: TrendPoint) -> list[tuple[TrendPoint | None, dict]]:
        """Take a closed slice's X-rays, fill the good ones in; returns the pieces."""
        pieces = list(correct_xrays(point, self.buffer.take(point.n_events)))
        for piece, xrays in pieces:
            if piece is None:
                self.dropped += len(xrays["energy_adc"])
                continue
            scaled = dict(xrays, energy_adc=xrays["energy_adc"] / piece.gain_rel)
            self.map.fill(scaled)
        return pieces


class _LastRun:
    """The last run's X-rays, each scaled by its good piece's gain_rel (drift removed)."""

    def __init__(self) -> None:
        self.energy: list[np.ndarray] = []
        self.gain_rel: list[float] = []

    def add(self, pieces) -> None:
        for piece, xrays in pieces:
            if piece is not None:
                self.energy.append(xrays["energy_adc"] / piece.gain_rel)
                self.gain_rel.append(piece.gain_rel)

    def spectrum(self, config: TrendConfig) -> tuple[Spectrum | None, float]:
        if not self.energy:
            return None, math.nan
        g = float(np.median(self.gain_rel))
        s = Spectrum(config.n_bins, config.adc_max)
        s.fill(np.concatenate(self.energy) * g)
        return s, g


def map_spread(result: GainMapResult) -> float:
    """Relative RMS of the good regions' gains weighted by their X-rays, with the regions'
    statistical errors removed in quadrature (0 when they explain it)."""
    good = [r for r in result.regions if r.ok and math.isfinite(r.rel_gain)]
    if len(good) < 2:
        return 0.0
    w = np.array([r.counts for r in good], dtype=float)
    g = np.array([r.rel_gain for r in good])
    e = np.array([r.rel_gain_err for r in good])
    mean = np.average(g, weights=w)
    var = np.average((g - mean) ** 2, weights=w) - np.average(e**2, weights=w)
    return float(math.sqrt(max(var, 0.0)) / mean)


def judged_reference(
    path, config: TrendConfig, event_filter: EventFilter | None = None
) -> tuple[RunSource, TrendPoint]:
    """All X-rays of a reference run judged as one slice (fitted, tested for a gain change and
    for not being one line); RunInputError unless it is a good point."""
    source = describe_run(path)
    cols: dict[str, list[np.ndarray]] = {"energy": [], "ordinal": [], "time": []}
    n = 0
    for events in RunReader(source, event_filter).chunks():
        mask = np.isfinite(events["energy_adc"])
        if config.select:
            mask &= select_xrays(events, config.selection)
        idx = np.flatnonzero(mask)
        cols["energy"].append(events["energy_adc"][idx])
        cols["ordinal"].append(n + idx)
        cols["time"].append(events["time_s"][idx])
        n += mask.size
    energy, ordinal, times = (np.concatenate(v) if v else np.zeros(0) for v in cols.values())
    t_range = (float(times[0]), float(times[-1])) if times.size else (math.nan, math.nan)
    xrays = SliceXrays(energy, ordinal.astype(np.int64), times, n, t_range)
    judge = SliceJudge(
        config.fit, config.check, config.n_bins, config.adc_max, config.threshold_adc
    )
    point = judge.judge(xrays, 0)
    if not point.good:
        raise RunInputError(f"{source.path}: reference run rejected: {point.reason}")
    point.set_reference(point.gain, point.gain_err, own=True)
    return source, point


def analyse(
    sources: list[RunSource],
    trend_cfg: TrendConfig,
    map_cfg: GainMapConfig,
    event_filter: EventFilter | None = None,
    reference: TrendPoint | None = None,
    bad_strips: BadStrips | None = None,
    progress: Callable[[int], object] | None = None,
) -> Outcome:
    """Trend, drift-corrected gain map and last-run spectrum over the runs (in time order);
    ``progress(n)`` is called with the events read."""
    trend = GainTrend(trend_cfg, bad_strips)
    if reference is not None:
        trend.set_reference(reference.gain, reference.gain_err)
    gmap = DriftCorrectedMap(map_cfg, bad_strips)
    out = Outcome(reference=reference)
    last_run = _LastRun()

    def closed(points: list[TrendPoint], run: str, last: bool) -> None:
        for p in points:
            pieces = gmap.close(p)
            if last:
                last_run.add(pieces)
            out.points.append(p)
            out.point_runs.append(run)
            if p.status != "ok" and len(out.slice_spectra) < MAX_SLICE_SPECTRA:
                s = Spectrum(trend_cfg.n_bins, trend_cfg.adc_max)
                s.fill(np.concatenate([x["energy_adc"] for _, x in pieces]))
                out.slice_spectra.append(SliceSpectrum(p, run, s))

    for k, src in enumerate(sources):
        last = k == len(sources) - 1
        for events in RunReader(src, event_filter).chunks():
            finite = np.isfinite(events["energy_adc"])
            selected = finite & (
                select_xrays(events, trend_cfg.selection) if trend_cfg.select else True
            )
            mask = selected & trend.usable(events)
            out.events += len(finite)
            out.candidates += int(finite.sum())
            out.xrays += int(mask.sum())
            gmap.map.count_excluded(events, selected & ~mask)
            gmap.buffer.add(events, mask)
            closed(trend.feed(events), src.name, last)
            if progress is not None:
                progress(len(finite))
        if trend.open_counts[0] > 0:
            closed([trend.close()], src.name, last)
    out.excluded = trend.excluded
    out.gainmap = gmap.map.fit()
    out.map_dropped = gmap.dropped
    out.map_rms = map_spread(out.gainmap)
    for _, p in out.rows:
        if p.good:
            p.set_spread(map_rms=out.map_rms)
    out.run_spectrum, out.run_gain_rel = last_run.spectrum(trend_cfg)
    if out.run_spectrum is not None:
        out.run_fit = fit_spectrum(out.run_spectrum, trend_cfg.fit)
    return out


__all__ = [
    "DriftCorrectedMap",
    "Outcome",
    "SliceSpectrum",
    "analyse",
    "correct_xrays",
    "judged_reference",
    "map_spread",
]
