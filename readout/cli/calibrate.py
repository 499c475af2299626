"""``agetdaq calibrate RUN.h5 [MORE.h5 ...]``: 55Fe gain, resolution and threshold versus time,
the gain map, and their plots, from one calibration run or months of them.

Slices: one point per run file by default, or every N selected X-rays (``--every``) or T minutes
of event time (``--minutes``); a slice never spans two runs. A slice that is not one line (a gain
step inside it) is split or refused (readout/analysis/calibration/judge.py). The gain map is
made from the X-rays of the good points, each scaled by its point's gain (``energy /
gain_rel``), leaving out X-rays next to the bad strips of the runs' pedestal tables. The analysis
is readout/analysis/calibration/campaign.py, the files outputs.py. Outputs in ``--output DIR``:
trend.csv/json, gainmap.csv/json, summary.json and PNG plots (matplotlib, the ``plots`` extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

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


def _configs(args: argparse.Namespace, sources):
    from agetdaq.readout.analysis.calibration import GainMapConfig, TrendConfig
    from agetdaq.readout.analysis.calibration.runs import EventFilter, threshold_of
    from agetdaq.readout.config import load_table

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


def _bad_strips(sources):
    """Union of the bad strips of the runs' pedestal tables (None when no run has one)."""
    from agetdaq.readout.analysis.calibration.badstrips import BadStrips, bad_strips_from_run

    found = [b for b in (bad_strips_from_run(s.path) for s in sources) if b is not None]
    return BadStrips.union(found) if found else None


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
    from agetdaq.readout.analysis.calibration import campaign, outputs, plots, report
    from agetdaq.readout.analysis.calibration.runs import RunInputError, open_runs

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
            reference = campaign.judged_reference(args.reference, trend_cfg, event_filter)
        bad = _bad_strips(sources)
        outdir.mkdir(parents=True, exist_ok=True)
    except (RunInputError, ValueError, OSError) as exc:
        return fail(str(exc))
    total = sum(s.n_events for s in sources)
    try:
        with _progress(total) as progress:
            task = progress.add_task("calibrating", total=total)
            out = campaign.analyse(
                sources, trend_cfg, map_cfg, event_filter,
                reference[1] if reference else None, bad,
                lambda n: progress.advance(task, n),
            )  # fmt: skip
    except (RunInputError, OSError, KeyError) as exc:  # a file damaged past its first rows
        return fail(f"reading the runs failed (damaged): {exc}", Exit.DAMAGED)
    except RuntimeError as exc:  # DamagedRunFileError: the same, from the store
        return fail(f"reading the runs failed (damaged): {exc}", Exit.DAMAGED)
    out.point_runs = [printable(r) for r in out.point_runs]  # a non-UTF-8 name into the files
    extra = {
        "runs": [
            {"file": printable(str(s.path)), "run": s.run_number, "events": s.n_events}
            for s in sources
        ],
        "reference": None
        if reference is None
        else {
            "file": printable(str(reference[0].path)),
            "fit": report.fit_to_dict(reference[1].fit),
            "gain": reference[1].gain,
            "gain_err": reference[1].gain_err,
        },
        "threshold_adc": trend_cfg.threshold_adc,
        "slice_xrays": None if trend_cfg.slice_xrays == SLICE_PER_RUN else trend_cfg.slice_xrays,
        "slice_minutes": trend_cfg.slice_minutes,
        "bad_strips": None if bad is None else bad.to_dict(),
        "damage": damage,
    }
    try:
        summary = outputs.summary(out, extra)
        written = outputs.write_tables(out, outdir, summary)
        if args.no_plots:
            pass
        elif plots.available():
            written += outputs.write_plots(out, outdir, trend_cfg.threshold_adc, plots.render)
        else:
            note(args, f"{plots.MISSING}; wrote CSV/JSON only")
    except OSError as exc:
        return fail(f"cannot write the results into {outdir}: {exc}")
    summary = dict(summary, written=[str(p) for p in written])
    text = f"{_points_text(out)}\n{len(written)} files written to {outdir}"
    emit(args, report.json_safe(summary), text)
    for item in damage:
        fail(item)
    if not any(p.good for _, p in out.rows):
        fail("no slice could be fitted (see 'reason' in trend.csv)")
        return Exit.DAMAGED if damage else Exit.FAILURE
    return Exit.DAMAGED if damage else Exit.OK


def _points_text(out, limit: int = 40) -> str:
    """The points as a table (the last ``limit`` of them; split slices by parts)."""
    from agetdaq.readout.analysis.calibration.outputs import utc

    lines = [f"{'run':<24} {'time (UTC)':<20} {'X-rays':>7} {'gain_rel':>9} {'FWHM/E':>7} "
             f"{'thr keV':>8} {'turn-on':>8}  status"]  # fmt: skip
    rows = out.rows[-limit:]
    for r, p in rows:
        status = p.status if p.status != "failed" else p.reason
        if p.status == "flagged":
            status = f"flagged: {p.flag}"
        lines.append(
            f"{r[:24]:<24} {utc(p.t_start_s):<20} {p.n_xrays:>7} {p.gain_rel:>9.4f} "
            f"{100 * p.resolution:>6.1f}% {p.threshold_kev_adc:>8.2f} "
            f"{p.threshold_kev_spectrum:>8.2f}  {status}"
        )
    return "\n".join(lines)
