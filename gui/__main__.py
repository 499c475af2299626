"""``python -m agetdaq.gui``: the monitor alone, as ``agetdaq gui`` (same options), without loading
the other commands (the DAQ's numba and scipy code): its window shows sooner. ``agetdaq demo``
starts the monitor this way."""

from __future__ import annotations

import argparse
import sys

from agetdaq.readout.cli import gui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agetdaq.gui")
    sub = parser.add_subparsers(dest="command")
    gui.register(sub)
    args = parser.parse_args(["gui", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
