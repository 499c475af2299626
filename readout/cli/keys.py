"""``agetdaq keys DIR``: CURVE key pairs for run control beyond loopback."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create CURVE key pairs for remote run control")
    p.add_argument("directory", help="where the keys go (server pair, client pairs, clients/)")
    p.add_argument(
        "--client",
        action="append",
        default=None,
        metavar="NAME",
        help="client pair to create (repeatable; default: gui)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.transport.security import create_keys

    made = create_keys(args.directory, tuple(args.client or ["gui"]))
    for path in made:
        print(path)
    if not made:
        print(f"keys already present in {args.directory}")
    return 0
