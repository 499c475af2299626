"""``agetdaq gui``: the shift crew's online monitor (PyQt6 + pyqtgraph), fed by the DAQ stream.

Before Qt is touched the display is checked (:func:`display_problem`): without a display, or with
the system libraries Qt's xcb platform plugin needs missing (libxcb-cursor0, libxcb-icccm4,
libxcb-keysyms1, ...: found with ``ldd`` on the plugin), the command says so and which packages
to install, instead of Qt's abort.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from agetdaq.readout.cli.common import Exit, add_common, fail, file_error_code, report_damage

# what Qt 6's xcb platform plugin needs beyond a desktop's usual libraries (Debian/Ubuntu names)
QT_XCB_PACKAGES = (
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0", "libxcb-render-util0",
    "libxcb-randr0", "libxcb-shape0", "libxcb-xinerama0", "libxcb-xkb1", "libxkbcommon-x11-0",
    "libegl1", "libfontconfig1", "libdbus-1-3",
)  # fmt: skip
WINDOWLESS = ("offscreen", "minimal", "minimalegl", "vnc", "eglfs", "linuxfb", "vkkhrdisplay")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gui",
        help="online monitor GUI (stream, run control, hitmap, 55Fe gain, rates, alarms)",
        description="Online monitor fed by the DAQ's ZeroMQ stream (docs/STREAM.md). Without "
        "--connect or --replay it watches tcp://127.0.0.1:5556 and controls tcp://127.0.0.1:5555.",
    )
    p.add_argument("--connect", action="append", metavar="ADDR",
                   help="stream address (repeat for several detector lines)")  # fmt: skip
    p.add_argument("--control", action="append", metavar="ADDR",
                   help="control address of the n-th --connect (omit: monitor only)")  # fmt: skip
    p.add_argument("--replay", action="append", metavar="RUN.h5",
                   help="replay a recorded run through the monitor")  # fmt: skip
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed (x recorded time; 0 = as fast as possible)")  # fmt: skip
    p.add_argument("--loop", action="store_true",
                   help="replay the file again and again as one endless run")  # fmt: skip
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="save the whole window after --after seconds and exit (needs no "
                        "display: drawn offscreen when there is none)")  # fmt: skip
    p.add_argument("--after", type=float, default=None, metavar="SECONDS",
                   help="delay before --screenshot (default 3)")  # fmt: skip
    p.add_argument("--quit-after", type=float, default=None, metavar="SECONDS",
                   help="close the monitor after this many seconds (demos, tests)")  # fmt: skip
    p.add_argument("--tab", metavar="NAME", help="tab shown first, e.g. hitmap, 55fe, rates")
    p.add_argument("--alarms", metavar="FILE.toml", help="alarm rules (default: shipped rules)")
    p.add_argument("--config", metavar="FILE.toml", help="[monitor] settings (gui/config.py)")
    p.add_argument("--mapping", metavar="FILE.csv", help="strip mapping (default: BabyIAXO)")
    p.add_argument("--redraw-hz", type=float, default=None, help="redraw rate cap (default 10)")
    p.add_argument("--snapshot-dir", default=None, metavar="DIR",
                   help="logbook directory (default: [monitor] logbook_dir)")  # fmt: skip
    add_common(p, json_result=False)
    p.epilog = (
        p.epilog or ""
    ) + " (3: a --replay file is damaged; it is replayed as far as it goes)"
    p.set_defaults(func=_run)


def check_replays(args: argparse.Namespace) -> tuple[int, bool]:
    """Open every --replay file before the window: (exit code if one cannot be read, damaged?)."""
    from agetdaq.readout.store.errors import RunFileError
    from agetdaq.readout.store.run import open_run

    damaged = False
    for path in args.replay or ():
        try:
            with open_run(path) as run:
                damaged |= report_damage(args, run) == Exit.DAMAGED
        except RunFileError as exc:
            return fail(f"{exc}", file_error_code(exc)), damaged
        except OSError as exc:
            return fail(f"{path}: {exc.strerror or exc}"), damaged
    return Exit.OK, damaged


def _run(args: argparse.Namespace) -> int:
    code, damaged = check_replays(args)
    if code:
        return code
    if args.screenshot and "QT_QPA_PLATFORM" not in os.environ and display_problem():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a picture needs no window on a screen
    problem = display_problem()
    if problem:
        return fail(problem, Exit.USAGE)
    try:
        from agetdaq.gui.app import run
    except ImportError as exc:
        return fail(f"gui needs the gui extra (pip install agetdaq[gui]): {exc}", Exit.USAGE)
    code = run(args)
    return Exit.DAMAGED if damaged and not code else code


# ---- can Qt open a window here? ----------------------------------------------------------------


def display_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why Qt could not open a window here (None: it can, as far as can be told without Qt)."""
    env = os.environ if env is None else env
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if platform in WINDOWLESS:
        return None
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if platform == "wayland" or (not platform and wayland and not display):
        return None if wayland else "QT_QPA_PLATFORM=wayland but WAYLAND_DISPLAY is not set"
    if not display:
        return ("no display (DISPLAY is not set): run it on a desktop or over 'ssh -X', or use "
                "'agetdaq demo --headless' (a status line), or QT_QPA_PLATFORM=offscreen for "
                "screenshots")  # fmt: skip
    missing = missing_xcb_libraries()
    if missing:
        return qt_libraries_message(missing)
    if not x_display_reachable(display):
        return f"the X display {display!r} cannot be reached (no X server there?)"
    return None


def qt_libraries_message(missing: list[str]) -> str:
    packages = " ".join(sorted({package_of(so) for so in missing}))
    return (
        f"Qt cannot open a window: the system lacks {', '.join(missing)} (needed by Qt's xcb "
        f"platform plugin). Install (Debian/Ubuntu): sudo apt-get install {packages} "
        f"('make demo' does it when run as root; README lists them). Meanwhile: "
        f"'agetdaq demo --headless', or QT_QPA_PLATFORM=offscreen for screenshots"
    )


def xcb_plugin() -> Path | None:
    """Qt's xcb platform plugin of the installed PyQt6 (found without importing Qt)."""
    spec = importlib.util.find_spec("PyQt6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        for sub in ("Qt6", "Qt"):
            path = Path(base) / sub / "plugins" / "platforms" / "libqxcb.so"
            if path.exists():
                return path
    return None


def missing_xcb_libraries(plugin: Path | None = None) -> list[str]:
    """Shared libraries ``ldd`` cannot find for the xcb plugin ([] when none, or no ldd)."""
    plugin = plugin or xcb_plugin()
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return missing_from_ldd(out.stdout)


def missing_from_ldd(text: str) -> list[str]:
    """``libfoo.so.1`` of every ``libfoo.so.1 => not found`` line, each once, in order."""
    seen: list[str] = []
    for name in re.findall(r"^\s*(\S+)\s*=>\s*not found", text, flags=re.MULTILINE):
        if name not in seen:
            seen.append(name)
    return seen


def package_of(soname: str) -> str:
    """The Debian package of a library by the naming rule: libxcb-icccm.so.4 -> libxcb-icccm4,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0, libEGL.so.1 -> libegl1."""
    m = re.fullmatch(r"(.+?)\.so\.(\d+).*", soname)
    if not m:
        return soname.lower()
    base, major = m.groups()
    return (f"{base}-{major}" if base[-1].isdigit() else f"{base}{major}").lower()


def x_display_reachable(display: str) -> bool:
    """A local display (``:N``) answers on its X socket (file or abstract); other forms are not
    checked (True)."""
    m = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
    if not m:
        return True
    path = f"/tmp/.X11-unix/X{m.group(1)}"
    for address in (path, "\0" + path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(address)
                return True
            except OSError:
                continue
    return False
