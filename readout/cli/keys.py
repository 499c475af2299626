"""``agetdaq keys -o DIR``: CURVE key pairs for run control beyond loopback."""

from __future__ import annotations

import argparse
import re

from agetdaq.readout.cli.common import Exit, add_common, emit, fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create CURVE key pairs for remote run control")
    p.add_argument("directory", nargs="?", metavar="DIR", help="same as -o DIR")
    p.add_argument(
        "-o", "--output", metavar="DIR",
        help="where the keys go (server pair, client pairs, clients/); existing keys are kept",
    )  # fmt: skip
    p.add_argument(
        "--client",
        action="append",
        default=None,
        metavar="NAME",
        help="client pair to create (repeatable; default: gui)",
    )
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.transport.security import SecurityError, create_keys

    if args.directory and args.output:
        return fail("give the directory once (DIR or -o DIR)", Exit.USAGE)
    directory = args.output or args.directory
    if not directory:
        return fail("no directory: keys -o DIR", Exit.USAGE)
    for name in args.client or ():
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            return fail(f"--client {name!r}: letters, digits, '_', '.', '-' only", Exit.USAGE)
    try:
        made = create_keys(directory, tuple(args.client or ["gui"]))
    except (SecurityError, ValueError) as exc:
        return fail(f"{exc}", Exit.USAGE)
    except OSError as exc:
        return fail(f"{directory}: {exc.strerror or exc}")
    text = "\n".join(str(p) for p in made) or f"keys already present in {directory}"
    emit(args, {"directory": str(directory), "created": [str(p) for p in made]}, text)
    return 0
