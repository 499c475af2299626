"""The BEC emulator and the DAQ server (``agetdaq emulate``, ``agetdaq serve``) as child processes
on free loopback ports, for scenario tests and tools (test helper, no pytest).

``DaqProcesses`` starts both at once (the server needs the board only to configure), waits until
the board answers and run control pings, and always leaves nothing behind: SIGTERM, then SIGKILL.
``emu("silence 6")`` sends an emulator-only command (``emu stat|fault|silence|reboot|burst``).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agetdaq.readout.transport.control import ControlClient

PY = [sys.executable, "-m", "agetdaq"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaqProcesses:
    """Emulator + ``agetdaq serve`` (see the module docstring); a context manager."""

    def __init__(
        self,
        workdir: Path,
        scenario: str = "calibration",
        settings: str | None = None,
        emulate_args: tuple[str, ...] = (),
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = self.workdir / "data"
        self.bec_port = free_port(socket.SOCK_DGRAM)
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.stream = f"tcp://127.0.0.1:{free_port()}"
        self.scenario = scenario
        self.settings = None
        if settings is not None:
            self.settings = self.workdir / "daq.toml"
            self.settings.write_text(settings)
        self.emulate_args = emulate_args
        self.serve_args = serve_args
        self.log_path = self.workdir / "children.log"
        self._log = self.log_path.open("a")
        self.emulator: subprocess.Popen | None = None
        self.server: subprocess.Popen | None = None
        self.started = 0.0  # monotonic launch time of the emulator
        self.board_up: float | None = None  # when the emulator first answered (~ model time 0)

    # ---- processes ---------------------------------------------------------------------------

    def start(self) -> DaqProcesses:
        self.started = time.monotonic()
        self.emulator = self._spawn(
            "emulate", "--board", f"127.0.0.1:{self.bec_port}", "--scenario", self.scenario,
            *self.emulate_args,
        )  # fmt: skip
        self.start_server()
        return self

    def start_server(self) -> subprocess.Popen:
        args = ["serve", "--board", f"127.0.0.1:{self.bec_port}", "--control", self.control,
                "--publish", self.stream, "--data-dir", str(self.data)]  # fmt: skip
        if self.settings is not None:
            args += ["--config", str(self.settings)]
        self.server = self._spawn(*args, *self.serve_args)
        return self.server

    def _spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*PY, *args], stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, limit_s: float = 120.0) -> None:
        """Until the board answers and run control pings (RuntimeError with the log if not)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if any(p is not None and p.poll() is not None for p in (self.emulator, self.server)):
                break
            board = self.emu("stat", timeout=0.5) is not None
            if board and self.board_up is None:
                self.board_up = time.monotonic()
            if board and self.request("ping", 1000)["ok"]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"emulator or DAQ server not up: {self.log()[-3000:]}")

    def request(self, cmd: str, timeout_ms: int = 30000, **fields: object) -> dict:
        client = ControlClient(self.control, timeout_ms=timeout_ms)
        try:
            return client.request(cmd, **fields)
        finally:
            client.close()

    def emu(self, command: str, timeout: float = 2.0) -> str | None:
        """An emulator command (``emu <command>``); its reply text, None when it did not answer."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.sendto(f"emu {command}".encode(), ("127.0.0.1", self.bec_port))
                return s.recvfrom(65535)[0].decode(errors="replace")
            except OSError:
                return None

    def stop_server(self, sig: int = signal.SIGTERM, wait_s: float = 20.0) -> None:
        """``sig`` to the DAQ server: it ends within ``wait_s`` (else SIGKILL); SIGSTOP and SIGCONT
        return at once (a frozen, then thawed DAQ)."""
        _end(self.server, sig, wait_s)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        for p in (self.server, self.emulator):
            _end(p, signal.SIGTERM, 20.0)
        self._log.close()

    def __enter__(self) -> DaqProcesses:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _end(proc: subprocess.Popen | None, sig: int, wait_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    if sig in (signal.SIGSTOP, signal.SIGCONT):  # freeze / thaw: the process goes on
        return
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
