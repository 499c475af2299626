"""``agetdaq replay FILE.pcap``: play a capture back as a fake board.

Listens on ``--listen HOST:PORT`` (alias ``--to``: the address the DAQ sends to, i.e. its
``--bec``), answers the DAQ's commands with the captured replies and sends the captured data frames
as the DAQ grants credit (:mod:`agetdaq.readout.simulation.capture_replay`). Runs until interrupted,
or with ``--idle-exit S`` until every frame was sent and no command came for S seconds. Prints a
JSON summary at the end. Exit status 2 when the capture cannot be replayed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from agetdaq.readout.cli.common import setup_logging, stop_on_signals

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="play a pcap capture back as a fake board")
    p.add_argument("capture", type=Path, metavar="FILE.pcap", help="capture (agetdaq run --pcap)")
    p.add_argument(
        "--listen",
        "--to",
        dest="listen",
        default="127.0.0.1:1122",
        metavar="HOST:PORT",
        help="UDP address to answer on, the DAQ's --bec (default 127.0.0.1:1122)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="1 = captured frame spacing (default), 2 = twice as fast, 0 = as fast as credit lets",
    )
    p.add_argument("--board", metavar="HOST[:PORT]", help="board to replay when there are several")
    p.add_argument(
        "--idle-exit",
        type=float,
        metavar="S",
        help="exit once every frame was sent and no command came for S seconds",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    from agetdaq.readout.simulation.capture_replay import CaptureReplay, ReplayError

    setup_logging(args.verbose)
    try:
        listen = _address(args.listen, "--listen")
        board = _address(args.board, "--board") if args.board else None
        replay = CaptureReplay(args.capture, listen, speed=args.speed, board=board).start()
    except (ReplayError, ValueError, OSError) as exc:
        print(f"agetdaq: replay: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    print(
        f"replaying {args.capture} as board {replay.stats()['board']} on "
        f"{replay.address[0]}:{replay.address[1]} (Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        while not stop.wait(0.2):
            idle = time.monotonic() - replay.last_command
            if args.idle_exit is not None and replay.done and idle >= args.idle_exit:
                break
    finally:
        replay.stop()
    print(json.dumps({"replay": replay.stats()}, indent=1))
    return 0


def _address(text: str, flag: str) -> tuple[str, int]:
    """HOST:PORT (port 0 = any / ephemeral) or HOST."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "0")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag}: expected HOST:PORT, not {text!r}")
    return host, int(port)
