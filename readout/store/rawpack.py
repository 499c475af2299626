"""Datagrams packed back to back into the run file's raw word stream (16-bit words, each
datagram padded to a whole word): numba kernels and their plain-Python reference."""

from __future__ import annotations

import numpy as np
from numba import njit


def pack_raw(buf: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """Rows of ``buf`` (``lengths[i]`` bytes each) back to back into ``out`` (uint8), each padded
    to a whole 16-bit word with a zero byte. Copies 16-bit words where the layout allows (twice
    the speed of a byte copy)."""
    if (
        buf.ndim == 2
        and buf.shape[1] % 2 == 0
        and out.shape[0] % 2 == 0
        and buf.flags.c_contiguous
        and out.flags.c_contiguous
    ):
        _pack_words(buf.view("<u2"), lengths, out.view("<u2"))
    else:
        _pack_bytes(buf, lengths, out)


@njit(cache=True, nogil=True)
def _pack_words(buf16: np.ndarray, lengths: np.ndarray, out16: np.ndarray) -> None:
    o = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        nw = (n + 1) >> 1
        out16[o : o + nw] = buf16[i, :nw]
        if n & 1:
            out16[o + nw - 1] &= 0x00FF  # the byte after the datagram (little-endian words)
        o += nw


@njit(cache=True, nogil=True)
def _pack_bytes(buf: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    o = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        out[o : o + n] = buf[i, :n]
        if n & 1:
            out[o + n] = 0
        o += n + (n & 1)


def pack_raw_ref(buf: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """Plain-Python reference of :func:`pack_raw`."""
    o = 0
    for row, n in zip(buf, lengths):
        n = int(n)
        padded = bytes(row[:n]) + (b"\0" if n % 2 else b"")
        out[o : o + len(padded)] = np.frombuffer(padded, np.uint8)
        o += len(padded)
