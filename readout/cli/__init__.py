"""The ``agetdaq`` command: one sub-command per module in this package.

Each module ``readout/cli/<name>.py`` but ``common`` and ``daq_common`` (what they share) defines
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
namespace; returns the exit code). The options follow one convention
(:mod:`~agetdaq.readout.cli.common`). Building the parser imports no module heavier
than argparse (``agetdaq --help`` is fast: ``tests/test_cli_convention.py`` counts the modules it
loads); a sub-command imports what it needs when it runs, so a missing optional extra only breaks
its own sub-command. No input, however bad, ends in a traceback: an unexpected error is one line
on stderr and exit status 1 (``-v`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from agetdaq import __version__
from agetdaq.readout.cli.common import EXIT_TEXT, PREFIX, Exit, setup_logging

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
    "completion",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agetdaq",
        description="BabyIAXO Micromegas readout and online monitor",
        epilog=EXIT_TEXT,
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


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """Encoding error handler: a byte that was not UTF-8 in a file name (a lone surrogate for
    Python) prints as ``\\xNN``, anything else as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start : exc.end]:
        code = ord(ch)
        out.append(f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}")
    return "".join(out), exc.end


def _safe_streams() -> None:
    """File names that are not UTF-8 (kept by Python as surrogates) print as ``\\xNN`` escapes
    instead of raising UnicodeEncodeError."""
    import codecs

    codecs.register_error("agetdaq.escape", _escape)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # e.g. a test's capture stream
                reconfigure(errors="agetdaq.escape")


def main(argv: list[str] | None = None) -> int:
    _safe_streams()
    parser = build_parser()
    args = parser.parse_args(argv)  # SystemExit(2) with the usage on stderr for bad arguments
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return Exit.USAGE
    PREFIX[0] = f"agetdaq {args.command}"
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    setup_logging(verbose, quiet)
    if not quiet:
        for text in getattr(args, "_deprecated", None) or ():
            print(f"agetdaq {args.command}: {text}", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`)
        _quiet_stdout()
        return Exit.OK
    except Exception as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        reason = str(exc).split("\n")[0][:300]
        print(
            f"agetdaq {args.command}: unexpected error ({type(exc).__name__}: {reason}); "
            "-v shows where; please report it",
            file=sys.stderr,
        )
        return Exit.FAILURE


def _quiet_stdout() -> None:
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
