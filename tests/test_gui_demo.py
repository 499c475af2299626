"""``agetdaq demo`` never leaves a child behind: when its monitor cannot start (no usable display,
or Qt aborts in the monitor process), and when the demo is ended by SIGTERM, SIGINT or even
SIGKILL. Real processes: the demo, its monitor (offscreen), the BEC emulator and the DAQ server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agetdaq.readout.cli.gui import missing_from_ldd, package_of, qt_libraries_message

pytestmark = [pytest.mark.network, pytest.mark.slow]
PIDS = re.compile(r"^demo: (.*pid \d+.*)$", re.MULTILINE)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _demo(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    log = (tmp_path / "demo.log").open("w")
    cmd = [sys.executable, "-m", "agetdaq", "demo", "--data-dir", str(tmp_path / "data"), *args]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=e, text=True)


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen, limit_s: float) -> str:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        text = path.read_text()
        if re.search(pattern, text, re.MULTILINE):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"no {pattern!r} from the demo: {path.read_text()[-3000:]}")


def _children(text: str) -> dict[str, int]:
    line = PIDS.search(text)
    assert line, text[-2000:]
    return {m[0].strip(): int(m[1]) for m in re.findall(r"([\w ]+?) pid (\d+)", line.group(1))}


def _none_left(pids: dict[str, int], limit_s: float = 15.0) -> list[str]:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        left = [f"{n} ({p})" for n, p in pids.items() if _alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    for p in pids.values():  # do not leave them to the next test either
        if _alive(p):
            os.kill(p, signal.SIGKILL)
    return left


def test_qt_libraries_are_named_with_their_packages():
    text = ("\tlibxcb-icccm.so.4 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"
            "\tlibxcb-keysyms.so.1 => not found\n\tlibxcb-icccm.so.4 => not found\n")  # fmt: skip
    missing = missing_from_ldd(text)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert [package_of(s) for s in ("libxcb-cursor.so.0", "libxkbcommon-x11.so.0",
                                    "libEGL.so.1")] == [
        "libxcb-cursor0", "libxkbcommon-x11-0", "libegl1"]  # fmt: skip
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in qt_libraries_message(missing)


def test_gui_without_a_display_says_so_instead_of_aborting(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY",
                                                            "QT_QPA_PLATFORM")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "agetdaq", "gui"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # not Qt's SIGABRT (-6)
    assert "no display (DISPLAY is not set)" in proc.stderr and "offscreen" in proc.stderr
    env["DISPLAY"] = ":987"  # nothing there (or Qt's xcb libraries missing: either is said)
    proc = subprocess.run([sys.executable, "-m", "agetdaq", "gui"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "cannot be reached" in proc.stderr or "apt-get install" in proc.stderr, proc.stderr


def test_demo_with_an_unusable_display_says_why_and_starts_nothing(tmp_path):
    proc = _demo(tmp_path, DISPLAY=":987", QT_QPA_PLATFORM="xcb")
    assert proc.wait(60) == 1
    text = (tmp_path / "demo.log").read_text()
    assert "the monitor cannot start" in text, text
    assert "pid" not in text  # no child was started


def test_demo_whose_monitor_aborts_stops_every_child(tmp_path):
    """Qt aborting in the monitor process (as without its xcb libraries): the demo sees the
    monitor die, says so and stops the emulator and the DAQ server."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\nif '--connect' in sys.argv:  # the monitor, not the DAQ\n    os.abort()\n"
    )
    path = os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])
    proc = _demo(tmp_path, "--seconds", "60", QT_QPA_PLATFORM="offscreen", PYTHONPATH=path)
    text = _wait_for(tmp_path / "demo.log", r"pid \d+", proc, 60)
    pids = _children(text)
    assert set(pids) == {"monitor", "emulator", "DAQ server"}
    assert proc.wait(60) != 0
    text = (tmp_path / "demo.log").read_text()
    assert re.search(r"the monitor ended \(exit code -6\)", text), text[-2000:]
    assert _none_left(pids) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_demo_ended_by_a_signal_leaves_no_child(tmp_path, sig):
    proc = _demo(tmp_path, "--seconds", "120", QT_QPA_PLATFORM="offscreen")
    try:
        wait_for = "run started" if sig == signal.SIGTERM else r"pid \d+"
        text = _wait_for(tmp_path / "demo.log", wait_for, proc, 120)
        pids = _children(text)
        assert all(_alive(p) for p in pids.values())
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    left = _none_left(pids)
    assert left == [], (left, (tmp_path / "demo.log").read_text()[-2000:])
    if sig == signal.SIGTERM:
        assert list((tmp_path / "data").glob("R*_calibration.h5"))  # the run was taken
