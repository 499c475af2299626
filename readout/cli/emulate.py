"""``agetdaq emulate``: one software BEC (4 FECs x 1 AGET) on a UDP port until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from agetdaq.readout.cli.common import Exit, add_board, add_common, alias, emit, fail, parse_board

DEFAULT_BOARD = "127.0.0.1:1122"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "emulate",
        help="run a BEC emulator that speaks the Feminos-family protocol",
        description="Run one emulated back-end card (chips 0-3 of --card-id) on a UDP port. "
        "Commands are accepted from anyone; replies go to the sender of each command, data to "
        "the sender of the last 'daq'. Emulator-only command: 'emu stat|fault k=v|silence S|"
        "reboot|burst 0|1'. The result (on stdout when it stops) is its counters.",
    )
    add_board(p, f"address the emulated board answers on (default {DEFAULT_BOARD}; port 0: any)")
    alias(p, "--host", dest="old_host", new="--board HOST:PORT")
    alias(p, "--port", dest="old_port", new="--board HOST:PORT")
    p.add_argument(
        "--card-id", type=int, choices=range(32), metavar="0..31", help="default: scenario [board]"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the physics and faults")
    p.add_argument("--scenario", default="default", help="scenario name or TOML file")
    p.add_argument("--mtu", type=int, choices=(1500, 9000), help="default: scenario [board]")
    p.add_argument("--truth", metavar="FILE.jsonl", help="write the truth side file")
    p.add_argument(
        "--bank",
        type=int,
        default=256,
        metavar="N",
        help="pre-generated events replayed when real time cannot keep up (0 = none)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="inject a fault, e.g. drop=0.01, delay=0.1, silence_at=5 (repeatable)",
    )
    add_common(p)
    p.set_defaults(func=run)


def board_address(args: argparse.Namespace) -> tuple[str, int]:
    """--board, or the old --host / --port."""
    text = args.board or DEFAULT_BOARD
    if text.endswith(":0"):  # any free port
        host, port = text[:-2], 0
    else:
        host, port = parse_board(text)
    if args.old_host:
        host = args.old_host
    if args.old_port is not None:
        if not str(args.old_port).isdigit() or int(args.old_port) > 65535:
            raise ValueError(f"--port: expected a port number, not {args.old_port!r}")
        port = int(args.old_port)
    return host, port


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.config import ConfigError
    from agetdaq.readout.simulation.emulator.faults import parse_fault_args
    from agetdaq.readout.simulation.emulator.server import Emulator

    log = logging.getLogger("agetdaq.emulate")
    try:
        host, port = board_address(args)
        faults = parse_fault_args(args.fault)
        emu = Emulator(
            scenario=args.scenario,
            host=host,
            port=port,
            card_id=args.card_id,
            seed=args.seed,
            mtu=args.mtu,
            truth_path=args.truth,
            bank=args.bank,
            faults=faults,
        )
    except (ConfigError, ValueError) as exc:  # a bad scenario, [faults] / [board] value or flag
        return fail(f"{exc}", Exit.USAGE)
    except OSError as exc:  # e.g. the truth file cannot be written
        return fail(f"{exc.strerror or exc} ({exc.filename or ''})")
    try:
        emu.start()
    except (ConfigError, ValueError) as exc:
        return fail(f"{exc}", Exit.USAGE)
    except OSError as exc:  # e.g. the port is taken
        return fail(f"{host}:{port}: {exc.strerror or exc}")
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    host, port = emu.address
    card_id = emu.card.config.card_id if emu.card is not None else args.card_id
    if not args.quiet:
        print(f"BEC emulator card {card_id} listening on {host}:{port} (Ctrl-C to stop)",
              file=sys.stderr, flush=True)  # fmt: skip
    while not done.wait(0.5):
        pass
    emu.stop()
    faults_text = emu.card.faults.summary() if emu.card is not None else ""
    log.debug("emulator stopped")
    text = f"BEC emulator stopped: {emu.summary()}"
    if faults_text:
        text += f"\ninjected faults: {faults_text}"
    emit(args, {"board": f"{host}:{port}", "summary": emu.summary(), "faults": faults_text}, text)
    return 0
