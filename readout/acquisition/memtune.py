"""Keep a long-running DAQ process's resident size flat: fixed glibc malloc thresholds.

glibc raises its mmap threshold each time a large block it had mmap'ed is freed (up to 32 MiB), so
the data path's ~0.1-10 MB numpy temporaries, made and freed by several threads, move from
mmap (returned to the system on free) into the per-thread heaps, which fragment: the resident
size of ``agetdaq run`` then grew ~12 MB a minute at the GbE line rate (benchmark MEM). Setting
the threshold explicitly turns that adaptation off; with the trim threshold, freed heap tops go
back too. Only glibc has ``mallopt``; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, kept fixed
TRIM_THRESHOLD_BYTES = 128 * 1024


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    ok = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and ok
    if not ok:
        log.debug("mallopt refused the thresholds")
    return ok
