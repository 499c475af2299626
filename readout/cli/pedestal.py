"""``agetdaq pedestal``: pedestal run on the internal generator -> per-channel table (+ upload)."""

from __future__ import annotations

import argparse
import math

from agetdaq.readout.cli.common import (
    Exit,
    add_common,
    add_output,
    emit,
    fail,
    setup_logging,
    stop_on_signals,
)
from agetdaq.readout.cli.daq_common import (
    add_daq_arguments,
    argument_error,
    drive_run,
    guarded,
    leave,
    load_settings,
    open_acquisition,
    run_result,
)

MAX_K_SIGMA = 100.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pedestal", help="pedestal run: mean, noise, thresholds, dead/noisy flags")
    add_daq_arguments(p, pedestals=False)  # it measures them
    add_output(p, "PED.h5", "pedestal run file", required=True)
    p.add_argument("--events", type=int, default=500, help="generator events (default 500)")
    p.add_argument("--seconds", type=float, default=120.0, help="at most this long (default 120)")
    p.add_argument(
        "--k-sigma",
        type=float,
        default=4.0,  # agetdaq.readout.datapath.pedestals.ZS_K_SIGMA (the CLI starts light)
        help="with --upload: card zero-suppression threshold = k * noise (default 4: one sigma "
        "under the DAQ's 5 sigma hit threshold, so the card keeps every strip the DAQ calls hit)",
    )
    p.add_argument(
        "--upload",
        action="store_true",
        help="send ped/thr to the board (baselines equalised at 250, like hped), then measure "
        "again with the equalisation on: --output holds that table, the raw run goes to the data "
        "dir, and the data dir keeps the table in force (pedestals.h5) for the runs that follow",
    )
    add_common(p)
    p.set_defaults(func=guarded(run))


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.acquisition.limits import run_limits_error
    from agetdaq.readout.acquisition.pedestal_upload import RunEnded

    setup_logging(args.verbose, args.quiet)
    refused = argument_error(args) or run_limits_error(args.events, args.seconds)
    if refused:  # before anything is sent
        return fail(refused if refused.startswith("--") else f"--{refused}", Exit.USAGE)
    if not (math.isfinite(args.k_sigma) and 0 < args.k_sigma <= MAX_K_SIGMA):
        return fail(f"--k-sigma must be finite, above 0 and at most {MAX_K_SIGMA:g}", Exit.USAGE)
    settings = load_settings(args)
    stop = stop_on_signals()
    acq = open_acquisition(args, settings, stop)
    try:
        if args.upload:
            code = _upload_run(acq, stop, args)
        else:
            rows = acq.uploads.measure(
                args.output, args.events, args.seconds, "pedestal run", lambda: drive_run(acq, stop)
            )
            summary = acq.uploads.summary(args.output, rows) if rows is not None else None
            code = _result(args, summary) if summary is not None else None
        if code is None:
            code = fail(f"no pedestal events received from {settings.daq.bec}")
    except RunEnded:  # the run did not end as asked: its error on stderr, its exit code
        code = run_result(acq)[2]
    finally:
        acq.close()
    return leave(acq, code)


def _result(args: argparse.Namespace, summary: dict) -> int:
    text = (
        f"pedestals of {summary['events']} events in {summary['file']}: mean "
        f"{summary['mean_adc']:.1f} ADC, noise {summary['noise_adc']:.2f} ADC, "
        f"{len(summary['dead'])} dead, {len(summary['noisy'])} noisy strips"
    )
    if "in_force" in summary:
        text += f"; uploaded ({summary['uploaded_commands']} commands), in force: "
        text += summary["in_force"]
    emit(args, summary, text)
    return Exit.OK


def _upload_run(acq, stop, args: argparse.Namespace) -> int | None:
    """Raw pedestals (a run in the data directory), upload, then the pedestals measured with the
    card's equalisation on (``--output``): the table that fits the data from now on, also left
    in the data directory as the table in force on the board (acquisition/pedestal_upload.py,
    the code run control's ``pedestal`` command runs too). None: no pedestal event came."""
    from agetdaq.readout.acquisition import pedestal_upload as up

    outcome = acq.upload_pedestals(
        args.output, args.events, args.seconds, args.k_sigma, lambda: drive_run(acq, stop)
    )
    if outcome.kind == up.IN_FORCE:
        return _result(args, outcome.summary)
    if outcome.kind == up.NO_EVENTS:
        return None
    if outcome.kind == up.RUN_FAILED:
        return run_result(acq)[2]  # the run's error on stderr
    if outcome.kind == up.STRIPS_OFF:
        emit(args, outcome.summary)
    return fail(outcome.message)
