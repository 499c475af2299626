"""``agetdaq pedestal``: pedestal run on the internal generator -> per-channel table (+ upload)."""

from __future__ import annotations

import argparse
import math
import time
from typing import TYPE_CHECKING

from agetdaq.readout.cli.common import (
    Exit,
    add_common,
    add_daq_arguments,
    add_output,
    argument_error,
    drive_run,
    emit,
    fail,
    guarded,
    leave,
    load_settings,
    run_result,
    setup_logging,
    stop_on_signals,
)

if TYPE_CHECKING:
    import numpy as np

MAX_K_SIGMA = 100.0
EQUALISED_SCRIPT = "pedestal_equalised"  # pedestal_data.txt with the card's subtract_ped on
RAW_COMMENT = "raw pedestals, before the upload (agetdaq pedestal --upload, pass 1)"
EQUALISED_COMMENT = (
    "pedestals measured after the upload, card pedestal equalisation on: the table that fits the "
    "data of the runs that follow (agetdaq pedestal --upload, pass 2)"
)
UPLOAD_TOLERANCE_ADC = 3.0  # a strip's mean after the upload vs raw mean + uploaded ped
UPLOAD_OFF_FRACTION = 0.05  # more strips off than this: the upload did not take
DRAIN_QUIET_S, DRAIN_LIMIT_S = 0.5, 60.0  # the card is empty after this long without data


class _RunEnded(Exception):
    """A pedestal pass did not end as asked (board lost, writer failure): its exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pedestal", help="pedestal run: mean, noise, thresholds, dead/noisy flags")
    add_daq_arguments(p, pedestals=False)  # it measures them
    add_output(p, "PED.h5", "pedestal run file", required=True)
    p.add_argument("--events", type=int, default=500, help="generator events (default 500)")
    p.add_argument("--seconds", type=float, default=120.0, help="at most this long (default 120)")
    p.add_argument(
        "--k-sigma",
        type=float,
        default=4.0,  # agetdaq.readout.datapath.pedestals.ZS_K_SIGMA
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
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.limits import run_limits_error
    from agetdaq.readout.link.board_link import BoardError

    setup_logging(args.verbose, args.quiet)
    refused = argument_error(args) or run_limits_error(args.events, args.seconds)
    if refused:  # before anything is sent
        return fail(refused if refused.startswith("--") else f"--{refused}", Exit.USAGE)
    if not (math.isfinite(args.k_sigma) and 0 < args.k_sigma <= MAX_K_SIGMA):
        return fail(f"--k-sigma must be finite, above 0 and at most {MAX_K_SIGMA:g}", Exit.USAGE)
    settings = load_settings(args)
    stop = stop_on_signals()
    acq = Acquisition(settings, publish=args.publish, metrics_port=args.metrics_port, stop=stop)
    try:
        if not args.upload:
            rows = _measure(acq, stop, args.output, args.events, args.seconds, "pedestal run")
            code = _result(args, _summary(acq, args.output, rows)) if rows is not None else None
        else:
            try:
                code = _upload_run(acq, stop, args)
            except BoardError as exc:
                code = fail(f"upload failed: {exc}")
        if code is None:
            code = fail(f"no pedestal events received from {settings.daq.bec}")
    except _RunEnded as ended:
        code = ended.code
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
    in the data directory as the table in force on the board. None: no pedestal event came."""
    from agetdaq.readout.acquisition.pedestal_use import save_in_force
    from agetdaq.readout.datapath.pedestals import upload_commands, uploaded_rows

    raw = _measure(acq, stop, None, args.events, args.seconds, RAW_COMMENT)
    if raw is None:
        return None
    if stop.is_set():
        return fail("interrupted before the upload: nothing sent")
    raw_file = acq.run.path
    _drain_leftovers(acq)
    commands = upload_commands(raw, k_sigma=args.k_sigma)
    t0 = time.monotonic()
    for line in commands:
        acq.link.command(line)
    upload_s = time.monotonic() - t0
    expected = uploaded_rows(raw)
    acq.load_pedestals(expected)  # the equalised run records it as the table in use at its start
    acq.configure(EQUALISED_SCRIPT)
    rows = _measure(acq, stop, args.output, args.events, args.seconds, EQUALISED_COMMENT)
    if rows is None:
        return None
    summary = _summary(acq, args.output, rows)
    summary["raw_file"] = raw_file
    summary["raw_mean_adc"] = _strip_mean(raw)
    summary["uploaded_commands"] = len(commands)
    summary["upload_s"] = round(upload_s, 2)
    check = upload_check(rows, expected)
    summary["upload_check"] = check
    if check["strips_off"] > UPLOAD_OFF_FRACTION * check["strips"]:
        emit(args, summary)
        return fail(
            f"the board's baselines after the upload are not where the upload puts them "
            f"({check['strips_off']} of {check['strips']} strips more than {UPLOAD_TOLERANCE_ADC} "
            f"ADC off, up to {check['largest_adc']} ADC): the table in force is left as it was"
        )
    source = {"file": str(args.output), "run": acq.run.number, "raw_file": raw_file,
              "table": "measured after the upload (card pedestal equalisation on)"}  # fmt: skip
    summary["in_force"] = str(save_in_force(acq.data_dir, rows, source))
    return _result(args, summary)


def _drain_leftovers(acq) -> None:
    """Empty the card before the upload: a run stopped at its event count leaves the events the
    card still held after the stop's bounded drain (tens of full-readout events when the link is
    slow), and they would come out first in the equalised pass, unequalised (measured: 59 of its
    100 events). The triggers are off since the stop; what arrives outside a run is discarded."""
    acq.link.start_data()
    acq.board.wait_quiet(DRAIN_QUIET_S, DRAIN_LIMIT_S)
    acq.link.stop_data(timeout=acq.board.timeout_s)
    acq.board.wait_quiet(0.2, 2.0)


def _measure(acq, stop, output, events: int, seconds: float, comment: str):
    """One pedestal run; the table it measured, or None when no pedestal event came.
    :class:`_RunEnded` when the run did not end as asked (its error is on stderr)."""
    acq.start_run("pedestal", comment, output, events, seconds)
    drive_run(acq, stop)
    code = run_result(acq)[2]
    if code:
        raise _RunEnded(code)
    return acq.pedestal_rows if acq.datapath.outputs.get("pedestals") is not None else None


def _strip_mean(rows: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(rows["mean"][rows["strip"] >= 0]))


def _summary(acq, output: str | None, rows: np.ndarray) -> dict:
    import numpy as np

    strips = rows[rows["strip"] >= 0]
    return {
        "file": output,
        "events": acq.counters()["stages"]["pedestal"]["events"],  # the table's, the file's
        "mean_adc": _strip_mean(rows),
        "noise_adc": float(np.median(strips["sigma"])),
        "dead": [int(s) for s in strips["strip"][(strips["flags"] & 1) != 0]],
        "noisy": [int(s) for s in strips["strip"][(strips["flags"] & 2) != 0]],
    }


def upload_check(measured: np.ndarray, expected: np.ndarray) -> dict:
    """Strips whose mean measured after the upload is more than UPLOAD_TOLERANCE_ADC from where
    the upload puts it (rows in the same order: both tables come from the same mapping)."""
    import numpy as np

    s = (measured["strip"] >= 0) & (expected["strip"] >= 0)
    d = np.abs(measured["mean"][s] - expected["mean"][s])
    return {
        "strips": int(s.sum()),
        "strips_off": int((d > UPLOAD_TOLERANCE_ADC).sum()),
        "largest_adc": round(float(d.max()), 1) if d.size else 0.0,
    }
