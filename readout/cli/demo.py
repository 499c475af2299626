"""``agetdaq demo``: emulator + DAQ server + monitor in one command, on the embedded defaults.

The emulator and the DAQ server run as child processes on free loopback ports; the monitor
(GUI when there is a display, a status line otherwise) runs here. A calibration run is started
automatically. Ctrl-C, closing the window or ``--seconds`` ends the demo; the children are
stopped cleanly and the run file stays in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.transport.control import ControlClient

    headless = args.headless or not has_display() or not _gui_available()
    seconds = args.seconds if args.seconds is not None else (20.0 if headless else None)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="agetdaq-demo-"))
    bec_port = _free_port(socket.SOCK_DGRAM)
    control = f"tcp://127.0.0.1:{_free_port()}"
    stream = f"tcp://127.0.0.1:{_free_port()}"
    py = [sys.executable, "-m", "agetdaq"]
    emulate = [*py, "emulate", "--port", str(bec_port), "--scenario", args.scenario]
    serve = [*py, "serve", "--bec", f"127.0.0.1:{bec_port}", "--control", control]
    serve += ["--publish", stream, "--data-dir", str(data_dir)]
    children = [subprocess.Popen(emulate)]
    print(
        f"demo: emulator on udp 127.0.0.1:{bec_port}, control {control}, stream {stream}, "
        f"data in {data_dir}",
        flush=True,
    )
    client = ControlClient(control, timeout_ms=60000)
    try:
        if not board_answers(bec_port, children[0], 120.0):
            print("demo: the emulator did not come up", file=sys.stderr)
            return 1
        children.append(subprocess.Popen(serve))
        if not _wait_ready(client, children, 60.0):
            print("demo: the DAQ server did not come up", file=sys.stderr)
            return 1
        # the physics script (zero suppression): the calibration run type's own reads every
        # channel whole, which needs a DAQ pedestal table the demo does not take
        client.request("configure", script="run", wait=True)
        reply = client.request("start", run_type=args.run_type, comment="agetdaq demo")
        if not reply.get("ok"):
            print(f"demo: start refused: {reply.get('error')}", file=sys.stderr)
            return 1
        if headless:
            return _headless(stream, seconds)
        return _gui(stream, control, seconds)
    finally:
        client.request("stop")
        client.close()
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


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


def _wait_ready(client, children, limit_s: float) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if any(c.poll() is not None for c in children):
            return False
        if client.request("ping").get("ok"):
            return True
        time.sleep(0.2)
    return False


def _headless(stream: str, seconds: float | None) -> int:
    from agetdaq.readout.cli.common import progress_line, stop_on_signals
    from agetdaq.readout.transport.stream import Subscriber

    stop = stop_on_signals()
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


def _gui(stream: str, control: str, seconds: float | None) -> int:
    from agetdaq.readout.cli import main as agetdaq

    argv = ["gui", "--connect", stream, "--control", control]
    if seconds:
        argv += ["--quit-after", str(seconds)]
    return agetdaq(argv)
