"""``agetdaq replay FILE.pcap``: play a capture back as a fake board.

The fake board answers on ``--board HOST:PORT`` (give the DAQ the same ``--board``): it replies
to the DAQ's commands with the captured replies and sends the captured data frames as the DAQ
grants credit (:mod:`agetdaq.readout.simulation.capture_replay`). ``--source`` picks the board of a
capture of several. Runs until interrupted, or with ``--idle-exit S`` until every frame was sent
and no command came for S seconds. Prints its counters at the end (``--json``). Exit status 1
when the capture cannot be replayed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agetdaq.readout.cli.common import (
    Exit,
    add_board,
    add_common,
    add_source,
    alias,
    emit,
    fail,
    parse_board,
    parse_source,
    stop_on_signals,
)

DEFAULT_BOARD = "127.0.0.1:1122"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="play a pcap capture back as a fake board", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("capture", type=Path, metavar="FILE.pcap", help="capture (agetdaq run --pcap)")
    add_board(p, f"address the fake board answers on: the DAQ's --board (default {DEFAULT_BOARD})")
    alias(p, "--listen", "--to", dest="board", new="--board")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="1 = captured frame spacing (default), 2 = twice as fast, 0 = as fast as credit lets",
    )
    add_source(p)
    p.add_argument(
        "--idle-exit",
        type=float,
        metavar="S",
        help="exit once every frame was sent and no command came for S seconds",
    )
    add_common(p)
    p.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    from agetdaq.readout.simulation.capture_replay import CaptureReplay, ReplayError

    try:
        text = args.board or DEFAULT_BOARD
        listen = (text[:-2], 0) if text.endswith(":0") else parse_board(text)
        source = parse_source(args.source)
        if args.speed < 0 or args.speed != args.speed:
            raise ValueError("--speed must be >= 0")
    except ValueError as exc:
        return fail(f"{exc}", Exit.USAGE)
    try:
        replay = CaptureReplay(args.capture, listen, speed=args.speed, board=source).start()
    except (ReplayError, ValueError, OSError) as exc:
        return fail(f"{exc}")
    stop = stop_on_signals()
    if not args.quiet:
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
    stats = replay.stats()
    emit(args, {"replay": stats}, "replay: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    return 0
