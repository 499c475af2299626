"""The ``agetdaq`` command: one sub-command per module in this package.

Each module ``readout/cli/<name>.py`` defines ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed namespace; returns the exit code). Modules are imported only
when listed in ``COMMANDS`` so that ``agetdaq --help`` stays fast and a missing optional extra only
breaks its own sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agetdaq import __version__

# sub-command module names, in the order `agetdaq --help` lists them
COMMANDS = (
    "emulate",
    "run",
    "serve",
    "pedestal",
    "gui",
    "demo",
    "dump",
    "inspect",
    "convert",
    "calibrate",
    "replay",
    "keys",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agetdaq", description="BabyIAXO Micromegas readout and online monitor"
    )
    parser.add_argument("--version", action="version", version=f"agetdaq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"agetdaq.readout.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agetdaq.readout.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
