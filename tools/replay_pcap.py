#!/usr/bin/env python3
"""Play a pcap capture back as a fake board (same as ``agetdaq replay``; see
readout/simulation/capture_replay.py).

python tools/replay_pcap.py RUN.pcap --listen 127.0.0.1:1122 [--speed X] [--idle-exit S]
"""

from __future__ import annotations

import sys

from agetdaq.readout.cli import main

if __name__ == "__main__":
    sys.exit(main(["replay", *sys.argv[1:]]))
