"""What the acquisition commands (``run``, ``serve``, ``pedestal``) share: their options and
settings, the checks made before anything is sent, their expected errors as exit codes, the live
progress line, a finished run's result, and the exit of a process holding files HDF5 could not
close.

Imported to build the parser, like :mod:`~agetdaq.readout.cli.common`: nothing heavy at import.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agetdaq.readout.cli.common import (
    Exit,
    OutputError,
    add_board,
    alias,
    fail,
    file_error_code,
    make_room,
)


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
    without --force, and never while another process writes it): OutputError."""
    output = getattr(args, "output", None)
    if output:
        make_room(Path(output), getattr(args, "force", False))


def open_acquisition(args: argparse.Namespace, settings, stop: threading.Event, server=None):
    """The acquisition engine of the command (``--publish``, ``--metrics-port``, ``--pcap``);
    ``server``, the run control bound before it, is closed if the engine cannot be made."""
    from agetdaq.readout.acquisition.engine import Acquisition

    try:
        return Acquisition(
            settings,
            publish=args.publish,
            metrics_port=args.metrics_port,
            pcap=getattr(args, "pcap", None),
            stop=stop,
        )
    except BaseException:
        if server is not None:
            server.close()
        raise


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
