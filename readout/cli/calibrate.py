"""``agetdaq calibrate RUN.h5 [MORE.h5 ...]``: 55Fe gain, resolution and threshold versus time,
the gain map, and their plots, from one calibration run or months of them.

Slices: one point per run file by default, or every N selected X-rays (``--every``) or T minutes
of event time (``--minutes``); a slice never spans two runs. The gain map is made from all the
input X-rays, each scaled by the fitted gain of its slice (``energy / gain_rel``), so a gain that
drifts over the input does not smear the map. Outputs in ``--output DIR``: trend.csv/json,
gainmap.csv/json, summary.json and PNG plots (matplotlib, the ``plots`` extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agetdaq.readout.cli.common import (
    Exit,
    add_common,
    add_output,
    emit,
    fail,
    note,
    printable,
)

OUTPUTS = ("trend.csv", "trend.json", "gainmap.csv", "gainmap.json", "summary.json")

SLICE_PER_RUN = 1 << 62  # slice_xrays that no run reaches: slices close at the end of each run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="55Fe calibration: gain / resolution / threshold trend, gain map, plots"
    )
    p.add_argument("runs", nargs="+", metavar="RUN.h5", help="calibration run file(s)")
    p.add_argument("--reference", metavar="REF.h5", help="reference run (gain_rel = 1)")
    every = p.add_mutually_exclusive_group()
    every.add_argument("--every", type=int, metavar="N", help="a point every N X-rays")
    every.add_argument("--minutes", type=float, metavar="T", help="a point every T minutes")
    p.add_argument("--regions", default="6x6", metavar="NXxNY", help="gain map grid (6x6)")
    p.add_argument(
        "--threshold-adc",
        type=float,
        metavar="ADC",
        help="DAQ threshold on the energy sum (default: the run's trigger energy_min)",
    )
    p.add_argument("--config", metavar="CAL.toml", help="[calibration.*] tables (see docs)")
    p.add_argument("--no-plots", action="store_true", help="CSV/JSON only")
    add_output(p, "DIR", "output directory (results already there are replaced only with --force)",
               required=True)  # fmt: skip
    add_common(p)
    p.epilog = (p.epilog or "") + "; 1 also when no slice could be fitted"
    p.set_defaults(func=run)


def parse_regions(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--regions must look like 6x6, got {text!r}")
    return int(parts[0]), int(parts[1])


@dataclass
class Outcome:
    """Everything the analysis found (what the output files are written from)."""

    points: list = field(default_factory=list)  # TrendPoint
    point_runs: list[str] = field(default_factory=list)
    gainmap: Any = None  # GainMapResult
    run_spectrum: Any = None  # Spectrum of the last run
    run_fit: Any = None  # its FitResult
    events: int = 0
    candidates: int = 0  # events the EventFilter let through
    xrays: int = 0  # selected X-rays
    map_dropped: int = 0  # X-rays of slices whose fit failed (not in the map)


class DriftCorrectedMap:
    """Fills a gain map with each X-ray scaled by the fitted gain of its slice."""

    def __init__(self, config) -> None:
        from agetdaq.readout.analysis.calibration.gainmap import GainMap
        from agetdaq.readout.analysis.calibration.runs import SliceBuffer

        self.map = GainMap(dataclasses.replace(config, select=False))
        self.buffer = SliceBuffer()
        self.dropped = 0  # X-rays of slices whose fit failed

    def close(self, point) -> None:
        import numpy as np

        xrays = self.buffer.take(point.n_events)
        if point.ok and np.isfinite(point.gain_rel) and point.gain_rel > 0:
            xrays["energy_adc"] = xrays["energy_adc"] / point.gain_rel
            self.map.fill(xrays)
        else:
            self.dropped += len(xrays["energy_adc"])


def _progress(total: int):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not sys.stderr.isatty() or total < 200_000,
        transient=True,
    )


def analyse(sources, trend_cfg, map_cfg, event_filter, reference_gain=None) -> Outcome:
    """Trend, drift-corrected gain map and last-run spectrum over the runs (in time order)."""
    import numpy as np

    from agetdaq.readout.analysis.calibration import GainTrend, fit_spectrum, select_xrays
    from agetdaq.readout.analysis.calibration.runs import RunReader, selected_spectrum

    trend = GainTrend(trend_cfg)
    if reference_gain is not None:
        trend.set_reference(reference_gain)
    gmap = DriftCorrectedMap(map_cfg)
    out = Outcome()

    def closed(points, run: str) -> None:
        for p in points:
            gmap.close(p)
            out.points.append(p)
            out.point_runs.append(run)

    total = sum(s.n_events for s in sources)
    with _progress(total) as progress:
        task = progress.add_task("calibrating", total=total)
        for k, src in enumerate(sources):
            last = k == len(sources) - 1
            for events in RunReader(src, event_filter).chunks():
                finite = np.isfinite(events["energy_adc"])
                mask = finite & (select_xrays(events, trend_cfg.selection) if trend_cfg.select
                                 else True)  # fmt: skip
                out.events += len(finite)
                out.candidates += int(finite.sum())
                out.xrays += int(mask.sum())
                gmap.buffer.add(events, mask)
                closed(trend.feed(events), printable(src.name))
                if last:
                    out.run_spectrum = selected_spectrum(events, trend_cfg, out.run_spectrum)
                progress.advance(task, len(finite))
            if trend.open_counts[0] > 0:
                closed([trend.close()], printable(src.name))
    out.gainmap = gmap.map.fit()
    out.map_dropped = gmap.dropped
    if out.run_spectrum is not None:
        out.run_fit = fit_spectrum(out.run_spectrum, trend_cfg.fit)
    return out


def _utc(t: float) -> str:
    import numpy as np

    if not np.isfinite(t):
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def write_tables(out: Outcome, outdir: Path, summary: dict) -> list[Path]:
    from agetdaq.readout.analysis.calibration import report

    rows = report.trend_csv_rows(out.points)
    rows[0] = ["run", *rows[0], "t_mid_utc"]
    for i, p in enumerate(out.points, start=1):
        rows[i] = [out.point_runs[i - 1], *rows[i], _utc(0.5 * (p.t_start_s + p.t_stop_s))]
    trend_json = [
        {"run": r, **d} for r, d in zip(out.point_runs, report.trend_to_dicts(out.points))
    ]
    written = [
        report.write_csv(rows, outdir / "trend.csv"),
        report.write_csv(report.gainmap_csv_rows(out.gainmap), outdir / "gainmap.csv"),
    ]
    for name, data in (
        ("trend.json", {"points": trend_json}),
        ("gainmap.json", report.gainmap_to_dict(out.gainmap)),
        ("summary.json", report.json_safe(summary)),
    ):
        path = outdir / name
        path.write_text(json.dumps(data, indent=1) + "\n")
        written.append(path)
    return written


def _time_axis(plot) -> None:
    """Days instead of hours for long inputs."""
    import numpy as np

    s = plot.series
    if plot.x_label == "time (h)" and s and s[0].x.size and np.nanmax(s[0].x) > 72:
        for series in s:
            series.x = series.x / 24.0
        plot.x_label = "time (days)"


def write_plots(out: Outcome, outdir: Path) -> list[Path]:
    from agetdaq.readout.analysis.calibration import plots, report

    figures = []
    if out.run_spectrum is not None:
        title = f"55Fe spectrum, last run ({out.point_runs[-1] if out.point_runs else ''})"
        figures.append(("spectrum", report.spectrum_plot(out.run_spectrum, out.run_fit, title)))
    gain = report.trend_plot(out.points, "gain_rel")
    gain.title, gain.y_label = "gain relative to the reference", "gain / reference"
    res = report.trend_plot(out.points, "resolution")
    for s in res.series:
        s.y, s.yerr = 100 * s.y, None if s.yerr is None else 100 * s.yerr
    res.title, res.y_label = "energy resolution", "FWHM / E at 5.9 keV (%)"
    thr = report.trend_plot(out.points, "threshold_kev_spectrum")
    thr.series[0].name = "spectrum turn-on"
    thr_adc = report.trend_plot(out.points, "threshold_kev_adc").series[0]
    thr_adc.name = "DAQ threshold / gain"
    thr.series.append(thr_adc)
    thr.title, thr.y_label = "energy threshold", "threshold (keV)"
    for plot in (gain, res, thr):
        _time_axis(plot)
    figures += [("gain_vs_time", gain), ("resolution_vs_time", res), ("threshold_vs_time", thr)]
    figures.append(("gainmap", report.gainmap_plot(out.gainmap)))
    return [report.render_png(p, outdir / f"{name}.png", plots.render) for name, p in figures]


def _configs(args: argparse.Namespace, sources):
    from agetdaq.readout.analysis.calibration import GainMapConfig, TrendConfig
    from agetdaq.readout.analysis.calibration.runs import EventFilter, threshold_of
    from agetdaq.readout.datapath.processing.trigger import load_table

    cfg = Path(args.config) if args.config else None
    trend = TrendConfig.from_toml(cfg) if cfg else TrendConfig()
    gmap = GainMapConfig.from_toml(cfg) if cfg else GainMapConfig()
    event_filter = EventFilter.from_toml(cfg) if cfg else EventFilter()
    sliced = set(load_table(cfg, "calibration.trend")) if cfg else set()
    nx, ny = parse_regions(args.regions)
    gmap = dataclasses.replace(gmap, nx=nx, ny=ny, selection=trend.selection)
    if args.every is not None:
        if args.every < 1:
            raise ValueError("--every must be >= 1")
        trend = dataclasses.replace(trend, slice_xrays=args.every)
    elif args.minutes is not None:
        if not args.minutes > 0:
            raise ValueError("--minutes must be > 0")
        trend = dataclasses.replace(trend, slice_minutes=args.minutes, slice_xrays=SLICE_PER_RUN)
    elif not sliced & {"slice_xrays", "slice_minutes"}:
        trend = dataclasses.replace(trend, slice_xrays=SLICE_PER_RUN)
    threshold, agree = threshold_of(sources)
    if args.threshold_adc is not None:
        threshold = args.threshold_adc
    elif not agree:
        note(args, "the runs have different DAQ thresholds; using the first")
    return dataclasses.replace(trend, threshold_adc=threshold), gmap, event_filter


def _damage(args: argparse.Namespace, paths: list[str]) -> tuple[list[str], bool]:
    """(the damage found on opening each run, is one of a newer format?); notices on stderr."""
    from agetdaq.readout.store.errors import NewerFormatError, RunFileError
    from agetdaq.readout.store.run import open_run

    found, newer = [], False
    for path in paths:
        try:
            with open_run(path) as r:
                for text in r.notices:
                    note(args, f"{path}: {text}")
                found += [f"{path}: damaged: {d}" for d in r.damage]
        except NewerFormatError:
            newer = True
        except (RunFileError, OSError):
            pass  # open_runs says why
    return found, newer


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.analysis.calibration import plots, report
    from agetdaq.readout.analysis.calibration.runs import (
        RunInputError,
        open_runs,
        reference_from_run,
    )

    outdir = Path(args.output)
    there = [n for n in OUTPUTS if (outdir / n).exists()]
    if there and not args.force:
        return fail(f"{outdir} holds results ({', '.join(there)}): use --force to replace them",
                    Exit.USAGE)  # fmt: skip
    if outdir.exists() and not outdir.is_dir():
        return fail(f"{outdir} is not a directory", Exit.USAGE)
    damage, newer = _damage(args, [*args.runs, *([args.reference] if args.reference else [])])
    try:
        sources = open_runs(args.runs)
    except RunInputError as exc:
        return fail(str(exc), Exit.NEWER_FORMAT if newer else Exit.FAILURE)
    try:
        trend_cfg, map_cfg, event_filter = _configs(args, sources)
    except (ValueError, OSError) as exc:
        return fail(str(exc), Exit.USAGE)
    try:
        reference = None
        if args.reference:
            reference = reference_from_run(args.reference, trend_cfg, event_filter)
        outdir.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    try:
        out = analyse(
            sources, trend_cfg, map_cfg, event_filter, reference.fit.gain if reference else None
        )
    except (RunInputError, OSError, KeyError) as exc:  # a file damaged past its first rows
        return fail(f"reading the runs failed (damaged): {exc}", Exit.DAMAGED)
    except RuntimeError as exc:  # DamagedRunFileError: the same, from the store
        return fail(f"reading the runs failed (damaged): {exc}", Exit.DAMAGED)
    summary = {
        "runs": [
            {"file": printable(str(s.path)), "run": s.run_number, "events": s.n_events}
            for s in sources
        ],
        "reference": None
        if reference is None
        else {
            "file": printable(str(reference.source.path)),
            "fit": report.fit_to_dict(reference.fit),
        },
        "threshold_adc": trend_cfg.threshold_adc,
        "slice_xrays": None if trend_cfg.slice_xrays == SLICE_PER_RUN else trend_cfg.slice_xrays,
        "slice_minutes": trend_cfg.slice_minutes,
        "events": out.events,
        "xray_candidates": out.candidates,
        "xrays": out.xrays,
        "map_dropped_xrays": out.map_dropped,
        "points": len(out.points),
        "points_ok": sum(p.ok for p in out.points),
        "last_run_fit": report.fit_to_dict(out.run_fit) if out.run_fit is not None else None,
        "damage": damage,
    }
    try:
        written = write_tables(out, outdir, summary)
        if args.no_plots:
            pass
        elif plots.available():
            written += write_plots(out, outdir)
        else:
            note(args, f"{plots.MISSING}; wrote CSV/JSON only")
    except OSError as exc:
        return fail(f"cannot write the results into {outdir}: {exc}")
    summary["written"] = [str(p) for p in written]
    text = f"{_points_text(out)}\n{len(written)} files written to {outdir}"
    emit(args, report.json_safe(summary), text)
    for item in damage:
        fail(item)
    if not any(p.ok for p in out.points):
        fail("no slice could be fitted (see 'reason' in trend.csv)")
        return Exit.DAMAGED if damage else Exit.FAILURE
    return Exit.DAMAGED if damage else Exit.OK


def _points_text(out: Outcome, limit: int = 40) -> str:
    """The points as a table (the last ``limit`` of them)."""
    lines = [f"{'run':<24} {'time (UTC)':<20} {'X-rays':>7} {'gain_rel':>9} {'FWHM/E':>7} "
             f"{'thr keV':>8} {'turn-on':>8}  status"]  # fmt: skip
    shown = out.points if len(out.points) <= limit else out.points[-limit:]
    for p, r in zip(shown, out.point_runs[-len(shown) :]):
        lines.append(
            f"{r[:24]:<24} {_utc(p.t_start_s):<20} {p.n_xrays:>7} {p.gain_rel:>9.4f} "
            f"{100 * p.resolution:>6.1f}% {p.threshold_kev_adc:>8.2f} "
            f"{p.threshold_kev_spectrum:>8.2f}  {'ok' if p.ok else p.reason}"
        )
    return "\n".join(lines)
