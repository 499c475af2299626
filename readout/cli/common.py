"""What every sub-command shares: the options of the CLI convention, exit codes, messages, and the
acquisition commands' settings, signals and progress line.

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
import os
import signal
import sys
import threading
from collections.abc import Callable
from enum import IntEnum
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


# ---- the acquisition commands (run, serve, pedestal) -----------------------------------------


def add_daq_arguments(p: argparse.ArgumentParser, pedestals: bool = True) -> None:
    """The options of the acquisition commands (``pedestals``: takes a pedestal table to use)."""
    add_board(p, "board address (default: [daq] bec of the settings)")
    alias(p, "--bec", dest="board", new="--board")
    p.add_argument("--config", metavar="FILE.toml", help="software settings (TOML)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (run files, run log)")
    p.add_argument("--mapping", metavar="FILE.csv", help="strip mapping (default: BabyIAXO)")
    p.add_argument("--publish", metavar="ENDPOINT", help="ZeroMQ stream, e.g. tcp://127.0.0.1:5556")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="Prometheus endpoint port")
    if pedestals:
        p.add_argument("--pedestals", metavar="PED.h5", help="pedestal table from a pedestal run")


def argument_error(args: argparse.Namespace) -> str | None:
    """Why an argument shared by the acquisition commands cannot be used (checked before
    anything is sent), or None."""
    port = getattr(args, "metrics_port", None)
    if port is not None and not 1 <= port <= 65535:
        return f"--metrics-port must be 1..65535, not {port}"
    return None


def load_settings(args: argparse.Namespace):
    """Settings from --config, overridden by the command line; ConfigError on bad input."""
    from agetdaq.readout.acquisition.settings import Settings

    s = Settings.load(args.config)
    changes = {}
    if getattr(args, "board", None):
        changes["bec"] = args.board
    if getattr(args, "data_dir", None):
        changes["data_dir"] = args.data_dir
    if getattr(args, "mapping", None):
        changes["mapping"] = args.mapping
    if changes:
        s = s.with_daq(**changes)
        s.check("command line")
    return s


def check_output(args: argparse.Namespace) -> None:
    """Refuse an existing -o before anything is sent to a board (a run file is never replaced
    without --force, and never while another process writes it): OutputExists / RunFileBusy."""
    from pathlib import Path

    output = getattr(args, "output", None)
    if not output:
        return
    from agetdaq.readout.store.lock import holder

    path = Path(output)
    who = holder(path)
    if who is not None and who.alive() is not False:
        raise OutputError(f"{path} is being written by {who}", Exit.FAILURE)
    if path.exists() or path.is_symlink():
        if not getattr(args, "force", False):
            raise OutputError(f"{path} exists (use --force to replace it)", Exit.USAGE)
        if path.is_dir():
            raise OutputError(f"{path} is a directory", Exit.USAGE)
        path.unlink()


class OutputError(RuntimeError):
    """An output that must not be written (it exists, or another process writes it)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# the acquisition commands' names for the codes of :class:`Exit`
EXIT_OK = Exit.OK  # the run ended as asked (its events, its time, a stop request)
EXIT_FAILED = Exit.FAILURE  # the run ended in error (writer failure, disk full)
EXIT_USAGE = Exit.USAGE  # refused input (settings, arguments, script, ports): nothing sent
EXIT_BOARD_LOST = Exit.BOARD_LOST
EXIT_INTERRUPTED = Exit.INTERRUPTED
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


def leave(acq, code: int) -> int:
    """The exit code. A process holding run files HDF5 could not close (a full disk:
    ``acq.abandoned``) ends here without the interpreter's teardown, which would crash in the
    HDF5 library (segfault) freeing them; everything of the run is written by then."""
    if getattr(acq, "abandoned", None):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The expected errors of the acquisition commands as a message and an exit code: 2 for
    bad settings, mapping or script (nothing was sent), 1 for a failure (port in use, file), 5
    when the board does not answer, 6 for a signal before the run started."""

    def wrapper(args: argparse.Namespace) -> int:
        try:  # first, and fast: before anything heavy is imported or sent
            check_output(args)
        except OutputError as exc:
            return fail(str(exc), exc.code)
        import zmq

        from agetdaq.protocol.mapping import MappingError
        from agetdaq.protocol.script import ScriptError
        from agetdaq.readout.acquisition.engine import BoardLost, EngineError, Interrupted
        from agetdaq.readout.config import ConfigError
        from agetdaq.readout.link.errors import BoardError
        from agetdaq.readout.store.errors import RunFileError
        from agetdaq.readout.store.writer import WriterError
        from agetdaq.readout.transport.security import SecurityError

        try:
            return func(args)
        except zmq.ZMQError as exc:  # e.g. the control or stream port is already bound
            return fail(f"cannot use ZeroMQ endpoint: {exc}")
        except BoardLost as exc:
            return fail(str(exc), Exit.BOARD_LOST)
        except Interrupted as exc:
            return fail(str(exc), Exit.INTERRUPTED)
        except (ConfigError, ScriptError, MappingError, SecurityError) as exc:
            return fail(str(exc), Exit.USAGE)
        except (BoardError, EngineError, WriterError) as exc:
            return fail(str(exc))
        except RunFileError as exc:  # e.g. --pedestals FILE that holds no pedestal table
            return fail(str(exc), file_error_code(exc))
        except OSError as exc:
            return fail(f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})".strip())

    return wrapper


def progress_line(st: dict) -> str:
    losses = sum(
        int(v) for kinds in st.get("losses", {}).values() for v in kinds.values() if int(v) > 0
    )
    shed = int(st.get("not_processed", 0))
    return (
        f"run {st['run_number']} {st['state']}: {st['events']} ev, "
        f"{st['events_per_s']:.1f} ev/s, {st['mb_per_s']:.2f} MB/s, losses {losses}, "
        + (f"not processed online {shed}, " if shed else "")
        + f"file {st['file_mb']:.1f} MB, queue {100 * st['queue_fill']:.0f}%"
    )


def drive_run(acq, stop: threading.Event, on_poll: Callable[[], object] | None = None) -> None:
    """Poll a running acquisition until it stops by itself or a signal stops it, printing a live
    progress line on a terminal (a plain log line every 10 s otherwise)."""
    import time

    tty = sys.stderr.isatty()
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    last_line = 0.0
    while acq.state == "running":
        if stop.wait(0.1):
            acq.stop_run("interrupted (signal)")
            break
        if on_poll is not None:
            on_poll()
        acq.poll()
        now = time.monotonic()
        if not quiet and now - last_line >= (0.5 if tty else 10.0):
            last_line = now
            line = progress_line(acq.status())
            print(
                ("\r" + line + "\x1b[K") if tty else line,
                end="" if tty else "\n",
                file=sys.stderr,
                flush=True,
            )
    if tty and not quiet:
        print(file=sys.stderr)


def run_result(acq) -> tuple[dict, str, int]:
    """A finished run as (JSON result, text for people, exit code), and its error on stderr:
    0 the run ended as asked, 1 it ended in error, 5 the board was lost."""
    run = acq.run
    counters = acq.counters()
    record = counters.get("stages", {}).get("record", {})
    result = {
        "run": run.number,
        "file": run.path,
        "stop_reason": run.stop_reason,
        "state": acq.state,
        "board_lost": run.board_lost,
        "events_in_file": record.get("events_written"),
        "events_over_limit": record.get("over_limit", 0),
        "counters": counters,
    }
    events = result["events_in_file"]
    if events is None:
        events = counters.get("datapath", {}).get("events", "?")
    text = f"run {run.number}: {events} events in {run.path}; stopped: {run.stop_reason}"
    if run.board_lost:
        fail(f"run {run.number}: {run.stop_reason}; {run.path} is closed")
        return result, text, Exit.BOARD_LOST
    if acq.state == "error":
        fail(f"run {run.number} ended in error: {acq.message}; {run.path} is closed")
        return result, text, Exit.FAILURE
    return result, text, Exit.OK
