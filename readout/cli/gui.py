"""``agetdaq gui``: the shift crew's online monitor (PyQt6 + pyqtgraph), fed by the DAQ stream."""

from __future__ import annotations

import argparse


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
    p.add_argument("--snapshot-dir", default=None, metavar="DIR",
                   help="logbook directory of the snapshots (default: [monitor] logbook_dir)")  # fmt: skip
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        from agetdaq.gui.app import run
    except ImportError as exc:
        print(f"agetdaq gui needs the gui extra (pip install agetdaq[gui]): {exc}")
        return 2
    return run(args)
