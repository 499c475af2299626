"""``agetdaq demo``: emulator + DAQ server + monitor in one command, on the embedded defaults.

Every part is a child process on free loopback ports: the monitor first (its window shows at once
and fills as the DAQ comes up), the emulator and the DAQ server together; a calibration run is
started automatically. Without a display the monitor is a status line here instead (and the
reason is printed); with a display Qt cannot use (e.g. libraries of its xcb plugin missing) the
demo says which and stops. Ctrl-C, SIGTERM, closing the window or ``--seconds`` ends the demo.

No child is ever left behind: each runs in a process group of its own, killed as a group at the
end; the demo stops them on SIGINT, SIGTERM and SIGHUP, at exit (atexit), and the kernel sends
them SIGTERM if the demo itself dies without cleaning up (PR_SET_PDEATHSIG). The run file stays
in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agetdaq.readout.cli.common import add_common
from agetdaq.readout.cli.gui import display_problem

PR_SET_PDEATHSIG = 1
STARTUP_S = 120.0  # the emulator and the DAQ compile their kernels on a fresh machine


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="emulator + DAQ server + monitor in one command")
    p.add_argument("--headless", action="store_true", help="status line instead of the GUI")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="end after T seconds (default: 20 headless, until closed with the GUI)",
    )
    p.add_argument("--scenario", default="calibration", help="emulator scenario")
    p.add_argument("--run-type", default="calibration", choices=("calibration", "background"))
    p.add_argument("--data-dir", default=None, help="where the run goes (default: a temp dir)")
    add_common(p, json_result=False)
    p.set_defaults(func=run)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _gui_available() -> bool:
    try:
        import PyQt6.QtWidgets  # noqa: F401
        import pyqtgraph  # noqa: F401
    except ImportError:
        return False
    return True


class Children:
    """The demo's child processes; :meth:`stop_all` ends them all, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def start(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        parent = os.getpid()
        proc = subprocess.Popen(argv, process_group=0, preexec_fn=lambda: _die_with(parent), **kw)
        with self._lock:
            self.procs.append((name, proc))
        return proc

    def dead(self) -> list[tuple[str, int]]:
        """(name, exit code) of the children that ended."""
        return [(n, p.returncode) for n, p in self.procs if p.poll() is not None]

    def stop_all(self, wait_s: float = 10.0) -> None:
        """SIGTERM to every child's group (the newest first), then SIGKILL after ``wait_s``."""
        with self._lock:
            procs, self.procs = list(reversed(self.procs)), []
        for _, p in procs:
            _signal_group(p, signal.SIGTERM)
        end = time.monotonic() + wait_s
        for _, p in procs:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait(5)
            _signal_group(p, signal.SIGKILL)  # anything the child left in its group


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _die_with(parent: int) -> None:
    """In the child before exec: SIGTERM when the demo dies (Linux), even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the demo died before the prctl
        os._exit(1)


def _stop_on_signals(stop: threading.Event) -> dict:
    """SIGINT / SIGTERM / SIGHUP set ``stop``; returns the previous handlers."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.transport.control import ControlClient

    problem = None if args.headless else display_problem()
    headless = args.headless or not _gui_available()
    if problem and not has_display():
        print(f"demo: {problem}\ndemo: showing a status line instead of the monitor",
              flush=True)  # fmt: skip
        headless = True
    elif problem:
        print(f"demo: the monitor cannot start: {problem}", file=sys.stderr)
        return 1
    seconds = args.seconds if args.seconds is not None else (20.0 if headless else None)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="agetdaq-demo-"))
    bec_port = _free_port(socket.SOCK_DGRAM)
    control = f"tcp://127.0.0.1:{_free_port()}"
    stream = f"tcp://127.0.0.1:{_free_port()}"
    py = [sys.executable, "-m", "agetdaq"]
    board = f"127.0.0.1:{bec_port}"
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    children = Children()
    client = ControlClient(control, timeout_ms=60000)
    print(f"demo: emulator on udp 127.0.0.1:{bec_port}, control {control}, stream {stream}, "
          f"data in {data_dir}", flush=True)  # fmt: skip
    started = False
    try:
        gui = None
        if not headless:  # first: its window shows while the DAQ comes up
            # the command line loads no DAQ code to build its parser: the window shows fast
            argv = [*py, "gui", "--connect", stream, "--control", control]
            if seconds:
                argv += ["--quit-after", str(seconds)]
            gui = children.start("monitor", argv)
        emulator = children.start(
            "emulator", [*py, "emulate", "--board", board, "--scenario", args.scenario]
        )
        children.start("DAQ server", [*py, "serve", "--board", board,
                                      "--control", control, "--publish", stream,
                                      "--data-dir", str(data_dir)])  # fmt: skip
        print("demo: " + ", ".join(f"{n} pid {p.pid}" for n, p in children.procs), flush=True)
        if not _start_run(client, children, emulator, bec_port, args.run_type, stop):
            return 1 if not stop.is_set() else 0
        started = True
        if gui is None:
            return _headless(stream, seconds, stop)
        print("demo: run started; close the monitor window (or Ctrl-C) to end", flush=True)
        return _watch(gui, children, stop)
    finally:
        if started and any(p.poll() is None for n, p in children.procs if n == "DAQ server"):
            client.timeout_ms = 5000
            client.request("stop")  # the run file is closed by the DAQ, not cut
        client.close()
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_run(client, children: Children, emulator, port: int, run_type: str, stop) -> bool:
    """Wait for the board and the DAQ server (watching every child), then start the run."""
    end = time.monotonic() + STARTUP_S
    board = False
    while time.monotonic() < end and not stop.is_set():
        dead = children.dead()
        if dead:
            name, code = dead[0]
            print(f"demo: the {name} ended (exit code {code}) before the run started; "
                  "stopping the demo", file=sys.stderr)  # fmt: skip
            return False
        board = board or board_answers(port, emulator, 0.5)
        client.timeout_ms = 1000
        if board and client.request("ping").get("ok"):
            client.timeout_ms = 60000  # the first start may wait for the DAQ's kernels
            # the physics script (zero suppression): the calibration run type's own reads every
            # channel whole, which needs a DAQ pedestal table the demo does not take
            client.request("configure", script="run", wait=True)
            reply = client.request("start", run_type=run_type, comment="agetdaq demo")
            if not reply.get("ok"):
                print(f"demo: start refused: {reply.get('error')}", file=sys.stderr)
                return False
            return True
        time.sleep(0.2)
    if not stop.is_set():
        print("demo: the emulator or the DAQ server did not come up", file=sys.stderr)
    return False


def _watch(gui: subprocess.Popen, children: Children, stop) -> int:
    """Until the monitor closes (its exit code), a signal, or another child ends."""
    while not stop.is_set():
        if gui.poll() is not None:
            if gui.returncode != 0:
                print(f"demo: the monitor ended with exit code {gui.returncode}",
                      file=sys.stderr)  # fmt: skip
            return gui.returncode if gui.returncode >= 0 else 1
        dead = [(n, c) for n, c in children.dead() if n != "monitor"]
        if dead:
            print(f"demo: the {dead[0][0]} ended (exit code {dead[0][1]})", file=sys.stderr)
            return 1
        stop.wait(0.2)
    return 0


def board_answers(port: int, child: subprocess.Popen, limit_s: float) -> bool:
    """Probe the emulator with ``version`` until it replies (it may be compiling at first)."""
    end = time.monotonic() + limit_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < end and child.poll() is None:
            try:
                s.sendto(b"version", ("127.0.0.1", port))
                s.recvfrom(2048)
                return True
            except OSError:
                time.sleep(0.2)
    return False


def _headless(stream: str, seconds: float | None, stop: threading.Event) -> int:
    from agetdaq.readout.cli.daq_common import progress_line
    from agetdaq.readout.transport.stream import Subscriber

    sub = Subscriber(stream, topics=("status",))
    end = time.monotonic() + seconds if seconds else float("inf")
    try:
        while not stop.is_set() and time.monotonic() < end:
            msg = sub.recv(200)
            if msg is not None:
                print(progress_line(msg.header), flush=True)
    finally:
        sub.close()
    return 0
