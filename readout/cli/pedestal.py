"""``agetdaq pedestal``: pedestal run on the internal generator -> per-channel table (+ upload)."""

from __future__ import annotations

import argparse
import time

from agetdaq.readout.cli.common import (
    add_common,
    add_daq_arguments,
    add_output,
    drive_run,
    emit,
    fail,
    guarded,
    load_settings,
    run_result,
    setup_logging,
    stop_on_signals,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pedestal", help="pedestal run: mean, noise, thresholds, dead/noisy flags")
    add_daq_arguments(p, pedestals=False)  # it measures them
    add_output(p, "PED.h5", "pedestal run file", required=True)
    p.add_argument("--events", type=int, default=500, help="generator events (default 500)")
    p.add_argument("--seconds", type=float, default=120.0, help="at most this long (default 120)")
    p.add_argument("--k-sigma", type=float, default=5.0, help="threshold = k * noise")
    p.add_argument(
        "--upload",
        action="store_true",
        help="send ped/thr to the board (baselines equalised at 250, like hped)",
    )
    add_common(p)
    p.set_defaults(func=guarded(run))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.datapath.pedestals import upload_commands
    from agetdaq.readout.link.board_link import BoardError

    setup_logging(args.verbose, args.quiet)
    settings = load_settings(args)
    stop = stop_on_signals()
    acq = Acquisition(settings, publish=args.publish, metrics_port=args.metrics_port)
    try:
        acq.start_run("pedestal", "pedestal run", args.output, args.events, args.seconds)
        drive_run(acq, stop)
        code = run_result(acq)[2]  # an error is on stderr
        if code:
            return code
        rows = acq.pedestal_rows
        if rows is None:
            return fail(f"no pedestal events received from {settings.daq.bec}")
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
                return fail(f"upload failed: {exc}")
            summary["uploaded_commands"] = len(commands)
            summary["upload_s"] = round(time.monotonic() - t0, 2)
        text = (
            f"pedestals of {summary['events']} events in {args.output}: mean "
            f"{summary['mean_adc']:.1f} ADC, noise {summary['noise_adc']:.2f} ADC, "
            f"{len(summary['dead'])} dead, {len(summary['noisy'])} noisy strips"
        )
        emit(args, summary, text)
        return 0
    finally:
        acq.close()
