"""The emulator cases of issue 15 for tools/calibration_accuracy.py ``--cases``.

Each case is a scenario streamed in time order through the real chain (tests/emulated_fe55.py)
into a GainTrend, as the DAQ feeds it: 55Fe X-rays (and muons) at their rates, slices of 1 000
selected X-rays. Every selected X-ray keeps its truth (gain = time curve x map), so each good
point is compared with the mean true gain of its own X-rays (relative to the reference slice's),
and each slice knows whether the gain changed inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from emulated_fe55 import EmulatedDaq, _by_count, pedestal_rows, with_rates

from agetdaq.readout.analysis.calibration import GainMap, GainMapConfig, GainTrend, TrendConfig
from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.campaign import map_spread
from agetdaq.readout.analysis.calibration.runs import calibration_events
from agetdaq.readout.simulation.emulator.params import GainMapParams, GainParams, GainRegion
from agetdaq.readout.simulation.emulator.scenario import Scenario

THRESHOLD_ADC = 200.0
WINDOW_S = 2.0  # events are generated in windows of this length
STEP_MIN = 0.01  # a slice's true gain drifts when it changes by more than this
CLEAN_MAX = 0.002  # ... and is clean when it changes by less than this
JUMP = 0.005  # a step: the true gain jumps by more than this between two X-rays
EDGE = 0.1  # a step with fewer than this share of the slice on one side is an "edge" step


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    scenario: Scenario
    t_span: tuple[float, float]
    gain_map: bool = False  # also measure the 6 x 6 gain map (with / without the bad strips)


def _base(fe55_hz: float = 100.0, muon_hz: float = 0.6) -> Scenario:
    return with_rates(Scenario.load("calibration"), fe55_hz, muon_hz)


def _steps(start: float, spacing: float, n: int, sizes: tuple[float, ...]) -> GainParams:
    g, steps = start, []
    for k in range(n):
        g *= 1.0 + sizes[k % len(sizes)]
        steps.append((spacing * (k + 1), round(g, 6)))
    return GainParams(kind="steps", start=start, steps=tuple(steps))


def _oscillation(amplitude: float, period_s: float, span_s: float) -> GainParams:
    t = np.arange(1.0, span_s, 1.0)
    g = 1.0 + amplitude * np.sin(2 * math.pi * t / period_s)
    return GainParams(kind="steps", start=1.0, steps=tuple(zip(t.tolist(), g.round(6).tolist())))


def cases() -> list[Case]:
    sizes = (-0.25, 0.15, -0.07, 0.03, -0.03, 0.07, -0.15, 0.25)
    follow = replace(_base().resolution, follow_gain=True)
    grid = tuple(
        GainRegion(ix, iy, round(0.85 + 0.06 * ix, 3)) for ix in range(6) for iy in range(6)
    )
    noisy = replace(_base().noise, sigma_mean=6.0, common_mode_sigma=4.0, dead_random=8,
                    noisy_random=8)  # fmt: skip
    spot = replace(_base().fe55, area="spot", centre_mm=(-12.0, 8.0), radius_mm=10.0)
    return [
        Case("steps-100", "gain steps of 3-25 % every 13 s at ~100 % gain (18 % FWHM)",
             replace(_base(), gain=_steps(1.0, 13.0, 32, sizes)), (0.0, 420.0)),
        Case("steps-30", "the same steps around 30 % gain (FWHM following the gain, ~39 %)",
             replace(_base(), gain=_steps(0.3, 13.0, 32, sizes), resolution=follow),
             (0.0, 420.0)),
        Case("day-night", "gain 1 +- 0.1 sin(2 pi t / 240 s)",
             replace(_base(), gain=_oscillation(0.1, 240.0, 480.0)), (0.0, 480.0)),
        Case("fall-30", "fast fall 100 % -> 30 % in 120 s (FWHM following)",
             replace(_base(), gain=GainParams(kind="exponential", start=1.0, end=0.3,
                                              delay_s=30.0, duration_s=120.0),
                     resolution=follow), (0.0, 200.0)),
        Case("drift-20", "CAST-like drift 100 % -> 20 % in 240 s (FWHM following)",
             replace(_base(), gain=GainParams(kind="exponential", start=1.0, end=0.2,
                                              delay_s=20.0, duration_s=240.0),
                     resolution=follow), (0.0, 280.0)),
        Case("fwhm-12", "constant gain, 12 % FWHM",
             replace(_base(), detector=replace(_base().detector, resolution_fwhm=0.12)),
             (0.0, 220.0)),
        Case("fwhm-25", "constant gain, 25 % FWHM",
             replace(_base(), detector=replace(_base().detector, resolution_fwhm=0.25)),
             (0.0, 220.0)),
        Case("noisy-dead", "noise 6 ADC, common mode 4 ADC, 8 dead + 8 noisy strips",
             replace(_base(), noise=noisy), (0.0, 330.0), gain_map=True),
        Case("map-gradient", "gain map 0.85 -> 1.15 across x (6 x 6 cells)",
             replace(_base(), gain=GainParams(map=GainMapParams(regions=grid))), (0.0, 330.0),
             gain_map=True),
        Case("muons-40hz", "55Fe spot (10 mm) beside muons at 40 Hz",
             replace(_base(100.0, 40.0), fe55=spot), (0.0, 160.0)),
    ]  # fmt: skip


@dataclass
class Slice:
    """A closed trend point with the truth of its X-rays."""

    point: object  # TrendPoint (the slice; parts inside)
    gain_time: np.ndarray  # true time gain of its X-rays, in order
    gain: np.ndarray  # true gain (time x map) of its X-rays


class Stream:
    """Feeds a case's events to a GainTrend and pairs every closed slice with its truth."""

    def __init__(self, case: Case, seed: int) -> None:
        self.case = case
        self.daq = EmulatedDaq(case.scenario, seed, energy_min_adc=THRESHOLD_ADC,
                               script="calibration")  # fmt: skip
        self.bad = BadStrips.from_pedestal_rows(pedestal_rows(self.daq))
        self.trend = GainTrend(TrendConfig(slice_xrays=1000, threshold_adc=THRESHOLD_ADC),
                               self.bad)  # fmt: skip
        self.rng = np.random.default_rng([seed, 7])
        self.slices: list[Slice] = []
        self.maps = {
            "without": GainMap(GainMapConfig()),
            "with": GainMap(GainMapConfig(), self.bad),
        }
        self.muons = [0, 0]  # generated, selected as X-rays
        self._queue: list[np.ndarray] = []

    def run(self) -> Stream:
        sc = self.case.scenario
        t0, t1 = self.case.t_span
        for t in np.arange(t0, t1, WINDOW_S):
            n_x = int(self.rng.poisson(sc.fe55.rate_hz * WINDOW_S))
            n_mu = int(self.rng.poisson(sc.muon.rate_hz * WINDOW_S))
            kinds = ["xray"] * n_x + ["muon"] * n_mu
            self.rng.shuffle(kinds)
            times = t + np.sort(self.rng.uniform(0.0, WINDOW_S, len(kinds)))
            rows, truths = self.daq.rows(kinds, times, t0)
            self._feed(rows, truths)
        if self.trend.open_counts[0]:
            self._closed([self.trend.close()])
        return self

    def _feed(self, rows: np.ndarray, truths: list[dict]) -> None:
        truth = _by_count(truths)
        tr = [truth[int(c)] for c in rows["event_count"]]
        events = calibration_events(rows, rows["timestamp"] * 20e-9 + self.case.t_span[0])
        used = np.isfinite(events["energy_adc"]) & self.trend.usable(events)
        muon = np.array([t["kind"] == "muon" for t in tr], dtype=bool)
        self.muons[0] += int(muon.sum())
        self.muons[1] += int((muon & used).sum())
        cols = np.array([(t["gain_time"], t["gain"] or np.nan) for t in tr]).reshape(-1, 2)
        self._queue.append(cols[used])
        if self.case.gain_map:
            for m in self.maps.values():
                m.fill(events)
        self._closed(self.trend.feed(events))

    def _closed(self, points: list) -> None:
        queue = np.concatenate(self._queue) if self._queue else np.zeros((0, 2))
        for p in points:
            mine, queue = queue[: p.n_xrays], queue[p.n_xrays :]
            self.slices.append(Slice(p, mine[:, 0], mine[:, 1]))
        self._queue = [queue]


def _pieces(s: Slice):
    """(piece, true mean gain of its X-rays) of a slice: its parts when it was split."""
    pieces = s.point.parts if s.point.status == "split" and s.point.parts else [s.point]
    start = 0
    for q in pieces:
        yield q, float(np.nanmean(s.gain[start : start + q.n_xrays])) if q.n_xrays else np.nan
        start += q.n_xrays


def measure(stream: Stream) -> dict:
    """The case's figures (see the module docstring of calibration_accuracy.py)."""
    sc = stream.case.scenario
    out: dict = {"slices": len(stream.slices)}
    status = [s.point.status for s in stream.slices]
    out.update({k: status.count(k) for k in ("ok", "flagged", "split", "failed")})
    caught = np.array([st in ("split", "failed") for st in status])
    kind, size = zip(*(_change(s.gain_time) for s in stream.slices)) if stream.slices else ((), ())
    # the last, partial slice fails "too few counts" for its own reason: left out of the rates
    full = np.array([s.point.n_xrays >= stream.trend.config.slice_xrays for s in stream.slices])
    kind = np.where(full, np.array(kind), "partial")
    size = np.where(full, np.array(size), np.inf)
    step = kind == "step"
    for lo, hi, key in ((0.01, 0.05, "det_1_5"), (0.05, 0.1, "det_5_10"), (0.1, 9.0, "det_10")):
        sel = step & (size > lo) & (size <= hi)
        out[key] = (int(caught[sel].sum()), int(sel.sum()))
    sel = (kind == "edge") & (size > 0.05)
    out["det_edge"] = (int(caught[sel].sum()), int(sel.sum()))
    sel = (kind == "drift") & (size > STEP_MIN)
    out["drift"] = (int(caught[sel].sum()), int(sel.sum()))
    clean = size < CLEAN_MAX
    out["clean"] = int(clean.sum())
    out["false_flag"] = float((np.array(status)[clean] != "ok").mean()) if clean.any() else np.nan
    if stream.case.gain_map:  # the map's spread is then known: removed from the intrinsic FWHM
        spread = map_spread(stream.maps["with"].fit())
        for s in stream.slices:
            for q, _ in _pieces(s):
                if q.good:
                    q.set_spread(map_rms=spread)
    ref_truth = next((t for s in stream.slices for q, t in _pieces(s) if q.reference), np.nan)
    dev, pulls, dres, within, dfit = [], [], [], [], []
    for s in stream.slices:
        for q, truth in _pieces(s):
            if not q.good or q.reference:
                continue
            rel = truth / ref_truth
            dev.append(q.gain_rel / rel - 1)
            pulls.append((q.gain_rel - rel) / q.gain_rel_err)
            within.append(q.gain_rel_err_stat / q.gain_rel_err)
            fwhm = sc.resolution.fwhm_at(sc.detector.resolution_fwhm, truth / _map_mean(sc))
            dres.append(q.resolution_intrinsic / fwhm - 1)
            dfit.append(q.resolution / fwhm - 1)
    dev, pulls, dres = (np.array(v) for v in (dev, pulls, dres))
    out["good_points"] = int(dev.size)
    out["gain_rms"] = float(np.sqrt(np.mean(dev**2))) if dev.size else np.nan
    out["gain_bias"] = float(np.mean(dev)) if dev.size else np.nan
    out["pull_mean"] = float(np.mean(pulls)) if pulls.size else np.nan
    out["pull_std"] = float(np.std(pulls)) if pulls.size else np.nan
    # all points share the reference: its error moves them together (the pulls' mean), so
    # inside one case their width is expected at the slices' own share of the error
    out["pull_within"] = float(np.sqrt(np.mean(np.square(within)))) if within else np.nan
    out["fwhm_bias"] = float(np.mean(dres)) if dres.size else np.nan
    out["fwhm_rms"] = float(np.sqrt(np.mean(dres**2))) if dres.size else np.nan
    out["fwhm_fitted_bias"] = float(np.mean(dfit)) if dfit else np.nan
    out["muons"] = tuple(stream.muons)
    out["excluded"] = stream.trend.excluded
    if stream.case.gain_map:
        out.update(map_figures(stream))
    return out


def _change(gain_time: np.ndarray) -> tuple[str, float]:
    """How the true gain moved inside a slice: ("step", size) for a jump with at least
    EDGE of the X-rays on each side, ("edge", size) for a jump closer to an end, ("drift",
    size) for a gain that moved without a jump; size = max / min - 1."""
    g = gain_time[np.isfinite(gain_time)]
    if g.size < 2:
        return "none", 0.0
    size = float(g.max() / g.min() - 1)
    jumps = np.abs(np.diff(g)) / g[:-1]
    k = int(np.argmax(jumps))
    if jumps[k] < JUMP:
        return "drift", size
    f = (k + 1) / g.size
    return ("step" if EDGE <= f <= 1 - EDGE else "edge"), size


def _map_mean(sc: Scenario) -> float:
    return float(np.mean(sc.gain.map.grid))


def map_figures(stream: Stream) -> dict:
    """Gain-map error against the truth, in the cells crossed by bad strips and the others,
    without and with the bad-strip list; the map's scale (reference) shift."""
    truth = stream.case.scenario.gain.map.grid
    out = {}
    results = {k: m.fit() for k, m in stream.maps.items()}
    crossed = np.zeros((6, 6), bool)
    for r in results["with"].regions:
        crossed[r.iy, r.ix] = bool(r.bad_strips)
    for k, res in results.items():
        rel = res.rel_gain
        ok = np.isfinite(rel)
        # normalise both to the clean cells, so a shifted reference does not hide the bias
        scale = np.median(rel[ok & ~crossed] / truth[ok & ~crossed]) if (ok & ~crossed).any() else 1
        dev = rel / (truth * scale) - 1
        sel = crossed & ok
        out[f"map_{k}_crossed_mean"] = float(np.mean(dev[sel])) if sel.any() else np.nan
        out[f"map_{k}_crossed_worst"] = float(np.min(dev[sel])) if sel.any() else np.nan
        out[f"map_{k}_clean_rms"] = float(np.sqrt(np.nanmean(dev[~crossed & ok] ** 2)))
        out[f"map_{k}_cells"] = int(ok.sum())
        out[f"map_{k}_ref"] = res.reference_peak_adc
        true_dev = rel / (truth / np.median(truth[ok])) - 1
        out[f"map_{k}_rms"] = float(np.sqrt(np.nanmean(true_dev[ok] ** 2)))
    out["map_crossed_cells"] = int(crossed.sum())
    out["map_scale_shift"] = out["map_without_ref"] / out["map_with_ref"] - 1
    out["bad_strips"] = ", ".join(stream.bad.names)
    return out
