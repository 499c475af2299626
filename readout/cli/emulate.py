"""``agetdaq emulate``: one software BEC (4 FECs x 1 AGET) on a UDP port until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from agetdaq.readout.config import ConfigError
from agetdaq.readout.simulation.emulator.faults import parse_fault_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "emulate",
        help="run a BEC emulator that speaks the Feminos-family protocol",
        description="Run one emulated back-end card (chips 0-3 of --card-id) on a UDP port. "
        "Commands are accepted from anyone; replies go to the sender of each command, data to "
        "the sender of the last 'daq'. Emulator-only command: 'emu stat|fault k=v|silence S|"
        "reboot|burst 0|1'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1122, help="UDP port (default 1122)")
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
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.simulation.emulator.server import Emulator

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        faults = parse_fault_args(args.fault)
        emu = Emulator(
            scenario=args.scenario,
            host=args.host,
            port=args.port,
            card_id=args.card_id,
            seed=args.seed,
            mtu=args.mtu,
            truth_path=args.truth,
            bank=args.bank,
            faults=faults,
        )
        emu.start()
    except ConfigError as exc:  # a bad scenario file, [faults] / [board] value or --fault flag
        print(f"agetdaq emulate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"agetdaq emulate: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    host, port = emu.address
    card_id = emu.card.config.card_id if emu.card is not None else args.card_id
    print(f"BEC emulator card {card_id} listening on {host}:{port} (Ctrl-C to stop)", flush=True)
    while not done.wait(0.5):
        pass
    emu.stop()
    print("BEC emulator stopped: " + emu.summary(), flush=True)
    if emu.card is not None:
        print("injected faults: " + emu.card.faults.summary(), flush=True)
    return 0
