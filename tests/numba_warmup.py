"""Fill numba's on-disk cache before the test suite needs it (test helper, no pytest).

On a fresh checkout every ``@njit(cache=True)`` kernel is compiled the first time a process calls
it: ~80 s of CPU for the data path and the emulated card, paid in one process (numba compiles
under one lock per process) by whichever test comes first. ``python tests/numba_warmup.py PART``
compiles one part of them into the cache through the project's own warm-ups; conftest.py runs the
parts in parallel processes, one per core, before the first test of a session that starts real
processes, and writes a stamp (:func:`fingerprint`) so that the next session with the same sources
skips it. A failed part costs nothing but the compile time it would have saved."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("protocol", "readout")  # the folders with kernels (agetdaq.protocol, agetdaq.readout)
# the slowest part first: the data path's own warm-up (decode, dense and sparse processing, ~60 s
# of CPU cold); the card's kernels (~12 s) and the 55Fe fit's with the other
PARTS = ("datapath", "card")


def fingerprint() -> str:
    """What the cache depends on: Python, numba, where the cache is, the kernels' sources."""
    import numba

    h = hashlib.sha256(f"{sys.version}|{numba.__version__}|".encode())
    h.update(os.environ.get("NUMBA_CACHE_DIR", "").encode())
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            st = path.stat()
            h.update(f"{path.relative_to(ROOT)}|{st.st_mtime_ns}|{st.st_size}\n".encode())
    return h.hexdigest()


def stamp_path() -> Path:
    """Next to the cache: removing the cache removes the stamp."""
    cache = os.environ.get("NUMBA_CACHE_DIR")
    return Path(cache) / "agetdaq-warm-up" if cache else ROOT / "readout" / "__pycache__" / "warm"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def datapath() -> None:
    """The DAQ's data path (its warm-up on a synthetic event) and the capture loop's kernels; no
    board is needed (nothing is sent to it)."""
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings
    from agetdaq.readout.link import mmsg

    with tempfile.TemporaryDirectory(prefix="agetdaq-warm-up-") as tmp:
        settings = Settings().with_daq(bec=f"127.0.0.1:{_free_udp_port()}", data_dir=tmp)
        acq = Acquisition(settings)
        try:
            if not acq.datapath.warm.wait(600):
                raise TimeoutError("the data path did not warm up within 600 s")
            mmsg.warm_up()
        finally:
            acq.close()


def card() -> None:
    """The emulated card's kernels (compiled when it starts) and the 55Fe spectrum fit's."""
    import numpy as np

    from agetdaq.readout.analysis.calibration.fit import fit_spectrum
    from agetdaq.readout.analysis.calibration.spectrum import Spectrum
    from agetdaq.readout.simulation.emulator.server import Emulator

    Emulator("calibration", port=0, seed=1).start().stop()
    rng = np.random.default_rng(1)
    fit_spectrum(Spectrum.from_values(rng.normal(1475.0, 90.0, 2000)))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in PARTS:
        print(f"usage: numba_warmup.py {{{','.join(PARTS)}}}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    globals()[argv[0]]()
    print(f"{argv[0]}: {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
