"""``agetdaq run``: configure the board, take one run, write the file, print a summary."""

from __future__ import annotations

import argparse

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="take one run from a BEC into an HDF5 file")
    add_daq_arguments(p)
    p.add_argument("--script", default="run", help="command script: run, startup or a file")
    p.add_argument(
        "--run-type", default="background", choices=("background", "calibration", "pedestal")
    )
    p.add_argument("--comment", default="", help="run comment")
    p.add_argument("--events", type=int, help="stop after N events")
    p.add_argument("--seconds", type=float, help="stop after T seconds")
    add_output(p, "RUN.h5", "run file (default: RNNNNN_TYPE.h5 in the data dir)")
    p.add_argument("--control", metavar="ENDPOINT", help="also answer run control here")
    p.add_argument(
        "--keys",
        dest="keys_dir",
        metavar="DIR",
        help="CURVE keys (agetdaq keys); required to bind control beyond loopback",
    )
    p.add_argument(
        "--pcap",
        metavar="FILE",
        help="also record every datagram exchanged with the board (both directions) to a pcap",
    )
    add_common(p)
    p.set_defaults(func=guarded(run))


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.acquisition.control_handler import handle
    from agetdaq.readout.acquisition.engine import Interrupted
    from agetdaq.readout.acquisition.limits import run_limits_error
    from agetdaq.readout.store.run import load_pedestals

    setup_logging(args.verbose, args.quiet)
    refused = argument_error(args) or run_limits_error(args.events, args.seconds)
    if refused:  # before anything is sent
        return fail(refused if refused.startswith("--") else f"--{refused}", Exit.USAGE)
    settings = load_settings(args)
    pedestals = load_pedestals(args.pedestals) if args.pedestals else None  # before any socket
    stop = stop_on_signals()
    server = _control_server(args, lambda req: handle(acq, req)) if args.control else None
    acq = open_acquisition(args, settings, stop, server)
    try:
        if pedestals is not None:
            acq.load_pedestals(pedestals)
        acq.configure(args.script)
        acq.script_name = args.script  # keep the user's script for this run
        if stop.is_set():
            raise Interrupted("stopped after the configuration; no run started")
        acq.start_run(args.run_type, args.comment, args.output, args.events, args.seconds)
        drive_run(acq, stop, (lambda: server.poll(0)) if server is not None else None)
        result, text, code = run_result(acq)
        emit(args, result, text)
    finally:
        if server is not None:
            server.close()
        acq.close()
    return leave(acq, code)


def _control_server(args: argparse.Namespace, handler):
    """Run control for this run (loopback, or CURVE with --keys), bound before anything else."""
    from agetdaq.readout.transport.control import ControlServer
    from agetdaq.readout.transport.security import control_socket_setup

    setup = control_socket_setup(args.control, args.keys_dir)
    return ControlServer(args.control, handler, configure_socket=setup)
