"""``agetdaq pedestal``: pedestal run on the internal generator -> per-channel table (+ upload)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from agetdaq.readout.cli.common import (
    EXIT_BOARD_LOST,
    EXIT_FAILED,
    add_daq_arguments,
    argument_error,
    drive_run,
    fail,
    guarded,
    leave,
    load_settings,
    setup_logging,
    stop_on_signals,
)

MAX_K_SIGMA = 100.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pedestal", help="pedestal run: mean, noise, thresholds, dead/noisy flags")
    add_daq_arguments(p)
    p.add_argument("--output", "-o", required=True, metavar="PED.h5", help="pedestal run file")
    p.add_argument("--events", type=int, default=500, help="generator events (default 500)")
    p.add_argument("--seconds", type=float, default=120.0, help="at most this long (default 120)")
    p.add_argument("--k-sigma", type=float, default=5.0, help="threshold = k * noise")
    p.add_argument(
        "--upload",
        action="store_true",
        help="send ped/thr to the board (baselines equalised at 250, like hped)",
    )
    p.set_defaults(func=guarded(run))


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.limits import run_limits_error

    setup_logging(args.verbose)
    refused = argument_error(args) or run_limits_error(args.events, args.seconds)
    if refused:  # before anything is sent
        return fail(refused if refused.startswith("--") else f"--{refused}")
    if not (math.isfinite(args.k_sigma) and 0 < args.k_sigma <= MAX_K_SIGMA):
        return fail(f"--k-sigma must be finite, above 0 and at most {MAX_K_SIGMA:g}")
    settings = load_settings(args)
    stop = stop_on_signals()
    acq = Acquisition(settings, publish=args.publish, metrics_port=args.metrics_port, stop=stop)
    try:
        code = _measure(acq, args, stop)
    finally:
        acq.close()
    return leave(acq, code)


def _measure(acq, args: argparse.Namespace, stop) -> int:
    """The pedestal run, its summary, the upload; the exit code."""
    from agetdaq.readout.datapath.pedestals import upload_commands
    from agetdaq.readout.link.board_link import BoardError

    acq.start_run("pedestal", "pedestal run", args.output, args.events, args.seconds)
    drive_run(acq, stop)
    if acq.run.board_lost:
        print(f"agetdaq: {acq.run.stop_reason}", file=sys.stderr)
        return EXIT_BOARD_LOST
    rows = acq.pedestal_rows
    if rows is None:
        print(f"agetdaq: no pedestal events received from {acq.settings.daq.bec}", file=sys.stderr)
        return EXIT_FAILED
    strips = rows[rows["strip"] >= 0]
    summary = {
        "file": args.output,
        "events": acq.datapath.counters.events_processed,
        "mean_adc": float(np.mean(strips["mean"])),
        "noise_adc": float(np.median(strips["sigma"])),
        "dead": [int(s) for s in strips["strip"][(strips["flags"] & 1) != 0]],
        "noisy": [int(s) for s in strips["strip"][(strips["flags"] & 2) != 0]],
    }
    if args.upload:
        commands = upload_commands(rows, k_sigma=args.k_sigma)
        t0 = time.monotonic()
        try:
            for line in commands:
                acq.link.command(line)
        except BoardError as exc:
            print(f"agetdaq: upload failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        summary["uploaded_commands"] = len(commands)
        summary["upload_s"] = round(time.monotonic() - t0, 2)
    print(json.dumps(summary, indent=1))
    return 0
