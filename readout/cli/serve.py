"""``agetdaq serve``: the acquisition engine as a long-running server driven by run control."""

from __future__ import annotations

import argparse
import logging

from agetdaq.readout.cli.common import Exit, add_common, fail, setup_logging, stop_on_signals
from agetdaq.readout.cli.daq_common import (
    add_daq_arguments,
    argument_error,
    guarded,
    leave,
    load_settings,
    open_acquisition,
)

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="DAQ server: waits for run control on the control socket")
    add_daq_arguments(p)
    p.add_argument(
        "--control",
        default="tcp://127.0.0.1:5555",
        metavar="ENDPOINT",
        help="run-control REP socket (default tcp://127.0.0.1:5555)",
    )
    p.add_argument(
        "--keys",
        dest="keys_dir",
        metavar="DIR",
        help="CURVE keys (agetdaq keys); required to bind control beyond loopback",
    )
    p.add_argument("--configure", metavar="SCRIPT", help="configure the board at start-up")
    p.add_argument(
        "--pcap",
        metavar="FILE",
        help="record every datagram exchanged with the board (both directions) to a pcap",
    )
    add_common(p, json_result=False)
    p.set_defaults(func=guarded(serve), publish="tcp://127.0.0.1:5556")


def serve(args: argparse.Namespace) -> int:
    from agetdaq.readout.acquisition.commands import EngineCommands
    from agetdaq.readout.store.run import load_pedestals
    from agetdaq.readout.transport.control import ControlService
    from agetdaq.readout.transport.security import control_socket_setup

    setup_logging(args.verbose, args.quiet)
    refused = argument_error(args)
    if refused:  # before anything is sent
        return fail(refused, Exit.USAGE)
    settings = load_settings(args)
    pedestals = load_pedestals(args.pedestals) if args.pedestals else None  # before any socket
    setup = control_socket_setup(args.control, getattr(args, "keys_dir", None))
    stop = stop_on_signals()
    # bound first: a port in use is refused before the board link or the stream exist; served
    # by a thread of its own, the commands carried out by this one (acquisition/commands.py)
    server = ControlService(args.control, lambda req: commands.handle(req), configure_socket=setup)
    acq = open_acquisition(args, settings, stop, server)
    commands = EngineCommands(acq)
    log.info("run control on %s, stream on %s", server.address, args.publish)
    try:
        if pedestals is not None:
            acq.load_pedestals(pedestals)
        if args.configure:
            acq.configure(args.configure)
        server.start()
        while not stop.is_set():
            commands.run_pending(0.1)
            acq.poll()
    finally:
        server.close()
        acq.close()
    return leave(acq, Exit.OK)
