"""What every sub-command shares: the options of the CLI convention, exit codes, messages, the
output rule, logging and stop signals (the acquisition commands share more:
:mod:`~agetdaq.readout.cli.daq_common`).

The convention (docs/RELIABILITY.md, "Command line"): ``--board HOST:PORT`` is where the board
is; ``--source HOST[:PORT]`` picks a board's traffic in a capture; ``-o/--output`` is what the
command writes (a file, or a directory for several) and is never replaced without ``--force``;
``-v/--verbose`` and ``-q/--quiet`` on every command; ``--json`` wherever a command prints a
result (text for people otherwise); results on stdout, messages and errors on stderr; exit codes
:class:`Exit`. Old spellings of options stay as hidden aliases that print a deprecation notice.

This module is imported to build the parser, so it imports nothing heavy (``agetdaq --help``
must not load numba, scipy or h5py).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from enum import IntEnum
from pathlib import Path
from typing import Any


class Exit(IntEnum):
    """Exit codes of every ``agetdaq`` command."""

    OK = 0
    FAILURE = 1  # the command failed, or its input cannot be read at all
    USAGE = 2  # bad arguments, settings, mapping or script: nothing was tried
    DAMAGED = 3  # file commands: the input is damaged; what could be read was output
    NEWER_FORMAT = 4  # file commands: a run file of a newer format version (upgrade agetdaq)
    BOARD_LOST = 5  # acquisition commands: the board does not answer, or fell silent in the run
    INTERRUPTED = 6  # acquisition commands: a signal came before the run started (no run made)


EXIT_TEXT = (
    "exit status: 0 ok, 1 failure or unreadable input, 2 usage (bad arguments or settings),\n"
    "3 damaged input (what could be read was output), 4 run file of a newer format version,\n"
    "5 the board does not answer or fell silent, 6 a signal before the run started (no run)"
)


# ---- messages ------------------------------------------------------------------------------------

PREFIX = ["agetdaq"]  # "agetdaq COMMAND" once main() knows the command


def fail(message: str, code: int = Exit.FAILURE) -> int:
    """Print ``agetdaq COMMAND: message`` on stderr; return ``code``."""
    print(f"{PREFIX[0]}: {message}", file=sys.stderr)
    return int(code)


def note(args: argparse.Namespace | None, message: str) -> None:
    """A notice on stderr (not with --quiet)."""
    if not getattr(args, "quiet", False):
        print(f"{PREFIX[0]}: {message}", file=sys.stderr)


def emit(args: argparse.Namespace, result: dict, text: str | None = None) -> None:
    """The command's result on stdout: JSON with --json, else ``text`` (or the result's fields
    one per line)."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=1, default=str))
        return
    if text is None:
        text = "\n".join(f"{k:>16}: {_short(v)}" for k, v in result.items())
    print(text)


def printable(text: str) -> str:
    """A file name that was not UTF-8 with its odd bytes as ``\\xNN`` (to write into results)."""
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


# ---- the options of the convention ---------------------------------------------------------------


class _Deprecated(argparse.Action):
    """A hidden old spelling: stores into the new option's dest and says so once."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        notes = getattr(namespace, "_deprecated", None) or []
        notes.append(f"{option_string} is deprecated: use {self.new}")
        namespace._deprecated = notes


def alias(p: argparse.ArgumentParser, *old: str, dest: str, new: str, **kwargs: Any) -> None:
    """Hidden deprecated spellings ``old`` of option ``new`` (same ``dest``)."""
    p.add_argument(*old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS, **kwargs)


def add_common(
    p: argparse.ArgumentParser, *, json_result: bool = True, json_help: str | None = None
) -> None:
    """-v/-q on every command; --json where the command prints a result."""
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    loud.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr")
    if json_result:
        p.add_argument("--json", action="store_true", help=json_help or "the result as JSON")
    p.epilog = EXIT_TEXT


def add_board(p: argparse.ArgumentParser, help: str, default: str | None = None) -> None:
    p.add_argument("--board", metavar="HOST:PORT", default=default, help=help)


def add_output(
    p: argparse.ArgumentParser, metavar: str, help: str, *, required: bool = False
) -> None:
    """-o/--output (what the command writes) and --force (replace what is there)."""
    p.add_argument("-o", "--output", metavar=metavar, required=required, help=help)
    p.add_argument(
        "-f", "--force", action="store_true", help="replace an existing output (never by default)"
    )


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        metavar="HOST[:PORT]",
        help="in a capture: the board whose traffic to read (default: every source of board "
        "frames; ':PORT' for a port)",
    )


def parse_board(text: str, option: str = "--board") -> tuple[str, int]:
    """HOST:PORT -> (host, port); ValueError naming the option."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option}: expected HOST:PORT, not {text!r}")
    return host, int(port)


def parse_source(text: str | None) -> tuple[str, int] | None:
    """``HOST``, ``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host or "", port or 0)."""
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        text = ":" + text
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "0")
    if (sep and not port.isdigit()) or int(port or 0) > 65535 or not (host or int(port or 0)):
        raise ValueError(f"--source: expected HOST, HOST:PORT or :PORT, not {text!r}")
    return host, int(port or 0)


# ---- exit codes of the file commands -----------------------------------------------------------


def file_error_code(exc: BaseException) -> int:
    """Exit code of a RunFileError raised when a file could not be read at all."""
    from agetdaq.readout.store.errors import NewerFormatError

    return Exit.NEWER_FORMAT if isinstance(exc, NewerFormatError) else Exit.FAILURE


def report_damage(args: argparse.Namespace, run: Any, extra: list[str] | None = None) -> int:
    """Print a run's notices and damage on stderr; Exit.DAMAGED when something is damaged."""
    path = run.path
    for text in run.notices:
        note(args, f"{path}: {text}")
    damage = [*run.damage, *(extra or [])]
    for text in damage:
        print(f"{PREFIX[0]}: {path}: damaged: {text}", file=sys.stderr)
    return Exit.DAMAGED if damage else Exit.OK


# ---- outputs, logging, signals -------------------------------------------------------------


class OutputError(RuntimeError):
    """An output that must not be written (it exists, or another process writes it)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def make_room(path: Path, force: bool) -> None:
    """The ``-o`` rule: an output another process writes is refused (exit 1), one that exists
    without ``--force`` or a directory too (exit 2): :class:`OutputError`; else it is removed."""
    from agetdaq.readout.store.lock import holder

    who = holder(path)
    if who is not None and who.alive() is not False:
        raise OutputError(f"{path} is being written by {who}", Exit.FAILURE)
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputError(f"{path} exists (use --force to replace it)", Exit.USAGE)
        if path.is_dir():
            raise OutputError(f"{path} is a directory", Exit.USAGE)
        path.unlink()


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT / SIGTERM / SIGHUP (the owner stops cleanly when it sees it: a
    closed terminal stops a run as ``kill`` does, with its end written)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return stop
