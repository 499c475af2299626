"""The BEC emulator and the DAQ server (``agetdaq emulate``, ``agetdaq serve``) as child processes
on free loopback ports, for scenario tests and tools (test helper, no pytest).

``DaqProcesses`` starts both at once (the server needs the board only to configure), waits until
the board answers and run control pings, and always leaves nothing behind: SIGTERM, then SIGKILL.
``emu("silence 6")`` sends an emulator-only command (``emu stat|fault|silence|reboot|burst``).
For a crew's sequence the pieces start one by one: ``start_emulator()``, ``cli("pedestal", ...)``
(a command run to its end in the work directory, bounded), ``start_server()``; ``truth_runs()``
reads the emulator's truth file (once it stopped) cut into the card's runs.
"""

from __future__ import annotations

import contextlib
import json
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
        self.serve_launcher = PY  # how ``serve`` is started (a wrapper that injects a fault)
        self.emulator: subprocess.Popen | None = None
        self.server: subprocess.Popen | None = None
        self.started = 0.0  # monotonic launch time of the emulator
        self.board_up: float | None = None  # when the emulator first answered (~ model time 0)

    # ---- processes ---------------------------------------------------------------------------

    def start(self) -> DaqProcesses:
        self.start_emulator()
        self.start_server()
        return self

    def start_emulator(self) -> subprocess.Popen:
        self.started = time.monotonic()
        self.emulator = self._spawn(
            "emulate", "--board", self.board, "--scenario", self.scenario,
            *self.emulate_args,
        )  # fmt: skip
        return self.emulator

    @property
    def board(self) -> str:
        return f"127.0.0.1:{self.bec_port}"

    def wait_board(self, limit_s: float = 120.0) -> None:
        """Until the emulator answers (RuntimeError with the log if not)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if self.emulator is None or self.emulator.poll() is not None:
                break
            if self.emu("stat", timeout=0.5) is not None:
                self.board_up = self.board_up or time.monotonic()
                return
            time.sleep(0.2)
        raise RuntimeError(f"emulator not up: {self.log()[-3000:]}")

    def cli(self, *args: str, limit_s: float = 240.0) -> subprocess.CompletedProcess:
        """``agetdaq ARGS`` run to its end in the work directory (text output, bounded)."""
        return subprocess.run([*PY, *args], cwd=self.workdir, capture_output=True, text=True,
                              timeout=limit_s)  # fmt: skip

    def start_server(self) -> subprocess.Popen:
        args = ["serve", "--board", f"127.0.0.1:{self.bec_port}", "--control", self.control,
                "--publish", self.stream, "--data-dir", str(self.data)]  # fmt: skip
        if self.settings is not None:
            args += ["--config", str(self.settings)]
        self.server = self._spawn(*args, *self.serve_args, launcher=self.serve_launcher)
        return self.server

    def _spawn(self, *args: str, launcher: list[str] = PY) -> subprocess.Popen:
        return subprocess.Popen([*launcher, *args], stdout=self._log, stderr=subprocess.STDOUT)

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

    def truth_runs(self, path: Path) -> list[list[dict]]:
        """The truth file cut where the card's event counter restarts (one list per run the
        card was configured for); read it once the emulator has stopped (it buffers)."""
        runs: list[list[dict]] = []
        last = None
        for line in Path(path).read_text().splitlines():
            t = json.loads(line)
            if last is None or t["event_count"] <= last:
                runs.append([])
            runs[-1].append(t)
            last = t["event_count"]
        return runs

    def stop_emulator(self) -> None:
        _end(self.emulator, signal.SIGTERM, 20.0)

    def stop_server(self, sig: int = signal.SIGTERM, wait_s: float = 20.0) -> None:
        """``sig`` to the DAQ server: it ends within ``wait_s`` (else SIGKILL); SIGSTOP and SIGCONT
        return at once (a frozen, then thawed DAQ)."""
        _end(self.server, sig, wait_s)

    def log(self) -> str:
        if not self._log.closed:
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
