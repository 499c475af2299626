"""``agetdaq gui``: the shift crew's online monitor (PyQt6 + pyqtgraph), fed by the DAQ stream."""

from __future__ import annotations

import argparse
import os
import sys

from agetdaq.readout.cli.common import Exit, add_common, fail, file_error_code, report_damage


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
                   help="save the whole window after --after seconds and exit")  # fmt: skip
    p.add_argument("--after", type=float, default=None, metavar="SECONDS",
                   help="delay before --screenshot (default 3)")  # fmt: skip
    p.add_argument("--quit-after", type=float, default=None, metavar="SECONDS",
                   help="close the monitor after this many seconds (demos, tests)")  # fmt: skip
    p.add_argument("--tab", metavar="NAME", help="tab shown first, e.g. hitmap, 55fe, rates")
    p.add_argument("--alarms", metavar="FILE.toml", help="alarm rules (default: shipped rules)")
    p.add_argument("--config", metavar="FILE.toml", help="[monitor] settings (gui/config.py)")
    p.add_argument("--mapping", metavar="FILE.csv", help="strip mapping (default: BabyIAXO)")
    p.add_argument("--redraw-hz", type=float, default=None, help="redraw rate cap (default 10)")
    p.add_argument("--snapshot-dir", default="snapshots", help="where snapshots are saved")
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
    env = os.environ
    shown = env.get("QT_QPA_PLATFORM") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")
    if not shown and sys.platform not in ("win32", "darwin"):
        return fail("no display (set DISPLAY, or QT_QPA_PLATFORM=offscreen for none)")
    try:
        from agetdaq.gui.app import run
    except ImportError as exc:
        return fail(f"gui needs the gui extra (pip install agetdaq[gui]): {exc}")
    code = run(args)
    return Exit.DAMAGED if damaged and not code else code
