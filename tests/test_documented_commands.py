"""Every documented command runs, in the documented order, against the emulator (issue 18).

The command lines of README.md, docs/*.md and gui/README.md (tests/doc_commands.py says which
lines count) are run one after the other as a user would type them, in one sandbox directory,
with only ports and paths substituted. Servers (``emulate``, ``serve``, ``replay``, a monitor
without ``--screenshot``) are started in the background, must come up, and must stop cleanly on
Ctrl-C at the end. Every other command must exit 0 and leave a meaningful result, checked per
sub-command below. A command added to the docs is tested without anyone writing a test; a doc
that drifts from the code fails here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import free_tcp_port
from doc_commands import ROOT, DocCommand, Substitution, all_commands

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(900)]

AGETDAQ = [sys.executable, "-m", "agetdaq"]
FOREGROUND_LIMIT_S = 240
# documented commands that are not run here, and why (counted in the test report)
NOT_RUN = {
    "make test": "CI itself runs it (this test is part of it)",
    "make lint": "CI itself runs it",
    "make format": "rewrites the working tree",
    "make bench": "benchmarks, minutes to hours; outside CI by design",
    "make bench-quick": "benchmarks; outside CI by design",
    "make soak": "10 kill -9 trials + 10 min at line rate; outside CI by design",
    "make fuzz": "1 000 000 datagrams; outside CI by design",
}
SERVERS = ("emulate", "serve", "replay")
COMMANDS = all_commands()


@dataclass
class World:
    sandbox: Path
    subst: Substitution
    servers: list[tuple[DocCommand, subprocess.Popen]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sandbox = tmp_path_factory.mktemp("docs")
    w = World(sandbox, Substitution(sandbox, free_tcp_port))
    yield w
    for _, proc in w.servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _env(argv: list[str] | None = None) -> dict[str, str]:
    """No display here, as on a DAQ PC reached by ssh: the monitor commands draw offscreen, the
    demo finds no display and runs headless for its 20 s, as README says it does."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "QT_QPA_PLATFORM": "offscreen"}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    if argv and "demo" in argv[:2]:
        env.pop("QT_QPA_PLATFORM")
    return env


def _is_server(argv: list[str]) -> bool:
    sub = argv[1] if len(argv) > 1 else ""
    if sub in SERVERS:
        return True
    return sub == "gui" and not {"--screenshot", "--quit-after"} & set(argv)


def _option(argv: list[str], *names: str) -> str | None:
    for i, w in enumerate(argv[:-1]):
        if w in names:
            return argv[i + 1]
    for w in argv:
        for n in names:
            if w.startswith(n + "="):
                return w.split("=", 1)[1]
    return None


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.doc}:{c.line}" for c in COMMANDS])
def test_documented_command(cmd: DocCommand, world: World):
    if cmd.text in NOT_RUN:
        pytest.skip(f"not run here: {NOT_RUN[cmd.text]}")
    argv = world.subst.argv(cmd)
    if argv[0] == "agetdaq":
        run_argv = [*AGETDAQ, *argv[1:]]
        cwd = world.sandbox
    else:  # make: from the repository, as README says
        run_argv, cwd = argv, ROOT
    if _is_server(argv):
        proc = subprocess.Popen(
            run_argv, cwd=cwd, env=_env(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        world.servers.append((cmd, proc))
        _wait_up(cmd, argv, proc)
        world.ran.append(cmd.text)
        return
    # a session of its own: a command that hangs is ended with everything it started (make's
    # children too), not only the process this test started
    proc = subprocess.Popen(run_argv, cwd=cwd, env=_env(argv), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=FOREGROUND_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{cmd}\ndid not end within {FOREGROUND_LIMIT_S} s: {out!r:.2000}")
    done = subprocess.CompletedProcess(run_argv, proc.returncode, out, err)
    assert done.returncode == 0, (
        f"{cmd}\nexit {done.returncode}\nstdout: {done.stdout[-3000:]}\n"
        f"stderr: {done.stderr[-3000:]}"
    )
    world.ran.append(cmd.text)
    _check_result(cmd, argv, done, world.sandbox)


def test_servers_stop_cleanly_on_ctrl_c(world: World):
    """Every documented server still runs at the end and stops on SIGINT with exit 0."""
    if not world.servers:
        pytest.skip("no documented server")
    problems = []
    for cmd, proc in world.servers:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            problems.append(f"{cmd}: exited early with {proc.returncode}: {out[-1500:]}")
            continue
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: to the whole foreground group
    for cmd, proc in world.servers:
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            problems.append(f"{cmd}: did not stop within 30 s of SIGINT")
            continue
        if rc != 0 and f"{cmd}:" not in " ".join(problems):
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            problems.append(f"{cmd}: exit {rc} after SIGINT: {out[-1500:]}")
    assert not problems, "\n".join(problems)


# ---- servers -------------------------------------------------------------------------------


def _wait_up(cmd: DocCommand, argv: list[str], proc: subprocess.Popen) -> None:
    sub = argv[1]
    end = time.monotonic() + 120
    if sub in ("emulate", "replay"):
        port = _udp_port(argv)
        from agetdaq.readout.cli.demo import board_answers

        assert board_answers(port, proc, 120.0), f"{cmd}: no answer on udp {port}"
        return
    if sub == "serve":
        from agetdaq.readout.transport.control import ControlClient

        address = _option(argv, "--control") or "tcp://127.0.0.1:5555"
        client = ControlClient(address, timeout_ms=2000)
        try:
            while time.monotonic() < end:
                assert proc.poll() is None, f"{cmd}: exited with {proc.returncode}"
                try:
                    if client.request("status").get("ok"):
                        return
                except Exception:  # not up yet
                    time.sleep(0.5)
        finally:
            client.close()
        pytest.fail(f"{cmd}: run control did not answer within 120 s")
    time.sleep(5.0)  # a monitor: it must still be running after its start-up
    assert proc.poll() is None, f"{cmd}: exited with {proc.returncode}"


def _udp_port(argv: list[str]) -> int:
    port = _option(argv, "--port")
    if port:
        return int(port)
    listen = _option(argv, "--board", "--listen", "--to")
    if listen:
        return int(listen.rsplit(":", 1)[1])
    return 1122


# ---- results -------------------------------------------------------------------------------


def _check_result(cmd: DocCommand, argv: list[str], done, sandbox: Path) -> None:
    sub = argv[1] if argv[0] == "agetdaq" and len(argv) > 1 else argv[0]
    out = done.stdout
    if sub in ("run", "pedestal"):
        path = _output(argv, sandbox)
        assert path is not None and path.exists(), f"{cmd}: no run file"
        from agetdaq.readout.store.reader import RunFile

        with RunFile(path) as f:
            n = f.n_events
        assert n > 0, f"{cmd}: no event in {path}"
        wanted = _option(argv, "--events")
        if wanted is not None:
            assert n == int(wanted), f"{cmd}: {n} events in the file, {wanted} asked for"
    elif sub == "calibrate":
        outdir = sandbox / (_option(argv, "--output", "-o") or ".")
        assert outdir.is_dir() and any(outdir.iterdir()), f"{cmd}: nothing in {outdir}"
    elif sub == "inspect":
        assert "event" in out.lower(), f"{cmd}: says nothing of events: {out[:500]}"
    elif sub == "dump":
        assert out.strip(), f"{cmd}: printed nothing"
        if "--json" in argv:
            text = out.strip()
            try:
                items = [json.loads(text)]
            except json.JSONDecodeError:
                items = [json.loads(x) for x in text.splitlines() if x.strip()]
            assert items, f"{cmd}: no JSON"
    elif sub == "convert":
        target = sandbox / [a for a in argv[2:] if not a.startswith("-")][1]
        assert target.exists() and target.stat().st_size > 0, f"{cmd}: {target} not written"
    elif sub == "keys":
        folder = sandbox / next(a for a in argv[2:] if not a.startswith("-"))
        assert (folder / "server.key").exists(), f"{cmd}: no server key in {folder}"
    elif sub == "gui":
        shot = sandbox / _option(argv, "--screenshot")
        assert shot.exists() and shot.stat().st_size > 5000, f"{cmd}: no screenshot"
    elif sub == "demo" or argv[:2] == ["make", "demo"]:
        assert "run" in (out + done.stderr).lower(), f"{cmd}: the demo showed no run"


def _output(argv: list[str], sandbox: Path) -> Path | None:
    value = _option(argv, "-o", "--output")
    return None if value is None else sandbox / value
