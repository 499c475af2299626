"""Shared pytest settings: offscreen Qt, a fixed hypothesis profile, free loopback ports, numba's
cache warmed up in parallel before a session that starts real processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture
def tcp_port() -> int:
    return free_tcp_port()


# ---- numba's cache filled in parallel before a session that starts real processes ----------------

_WARM_UP: list[str] = []  # what the warm-up did, for the summary


def pytest_collection_finish(session: pytest.Session) -> None:
    """On a cold cache (tests/numba_warmup.py's stamp does not match the sources), compile the
    kernels in one process per part, in parallel, before the first test; only when a selected test
    uses the network (emulator, DAQ): those need every kernel. AGETDAQ_WARM_UP=0 turns it off."""
    if session.config.option.collectonly or os.environ.get("AGETDAQ_WARM_UP") == "0":
        return
    if not any(item.get_closest_marker("network") for item in session.items):
        return
    import subprocess
    import sys
    import time

    from numba_warmup import PARTS, fingerprint, stamp_path

    stamp, wanted = stamp_path(), fingerprint()
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    t0 = time.monotonic()
    script = str(Path(__file__).with_name("numba_warmup.py"))
    out_to = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = {part: subprocess.Popen([sys.executable, script, part], **out_to) for part in PARTS}
    failed = []
    for part, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"{part} (exit {proc.returncode}): {out.strip()[-1500:]}")
    if failed:
        _WARM_UP.append(f"numba warm-up failed, tests compile what they use: {'; '.join(failed)}")
        return
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(wanted)
    _WARM_UP.append(f"numba warm-up: {', '.join(PARTS)} compiled in {time.monotonic() - t0:.0f} s")


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _WARM_UP:
        terminalreporter.write_line(line)
