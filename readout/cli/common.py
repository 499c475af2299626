"""Helpers shared by the acquisition sub-commands: settings, logging, signals, progress."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable

from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.config import ConfigError


def add_daq_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bec", metavar="HOST:PORT", help="board address (default from settings)")
    p.add_argument("--config", metavar="FILE.toml", help="software settings (TOML)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (run files, run log)")
    p.add_argument("--mapping", metavar="FILE.csv", help="strip mapping (default: BabyIAXO)")
    p.add_argument("--publish", metavar="ENDPOINT", help="ZeroMQ stream, e.g. tcp://127.0.0.1:5556")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="Prometheus endpoint port")
    p.add_argument("--pedestals", metavar="PED.h5", help="pedestal table from a pedestal run")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def load_settings(args: argparse.Namespace) -> Settings:
    """Settings from --config, overridden by the command line; ConfigError on bad input."""
    s = Settings.load(args.config)
    changes = {}
    if getattr(args, "bec", None):
        changes["bec"] = args.bec
    if getattr(args, "data_dir", None):
        changes["data_dir"] = args.data_dir
    if getattr(args, "mapping", None):
        changes["mapping"] = args.mapping
    if changes:
        s = s.with_daq(**changes)
        s.check("command line")
    return s


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT / SIGTERM (the owner stops cleanly when it sees it)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def fail(message: str, code: int = 2) -> int:
    print(f"agetdaq: {message}", file=sys.stderr)
    return code


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the expected errors of the acquisition into a clear message and exit code 2."""
    import zmq

    from agetdaq.protocol.mapping import MappingError
    from agetdaq.protocol.script import ScriptError
    from agetdaq.readout.acquisition.engine import EngineError
    from agetdaq.readout.link.board_link import BoardError
    from agetdaq.readout.store.errors import RunFileError
    from agetdaq.readout.transport.security import SecurityError

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except zmq.ZMQError as exc:  # e.g. the control or stream port is already bound
            return fail(f"cannot use ZeroMQ endpoint: {exc}")
        except (
            ConfigError,
            ScriptError,
            MappingError,
            BoardError,
            EngineError,
            SecurityError,
            RunFileError,  # e.g. --pedestals FILE that holds no pedestal table
        ) as exc:
            return fail(str(exc))
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
    last_line = 0.0
    while acq.state == "running":
        if stop.wait(0.1):
            acq.stop_run("interrupted (signal)")
            break
        if on_poll is not None:
            on_poll()
        acq.poll()
        now = time.monotonic()
        if now - last_line >= (0.5 if tty else 10.0):
            last_line = now
            line = progress_line(acq.status())
            print(
                ("\r" + line + "\x1b[K") if tty else line,
                end="" if tty else "\n",
                file=sys.stderr,
                flush=True,
            )
    if tty:
        print(file=sys.stderr)
