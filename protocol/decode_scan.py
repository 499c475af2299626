"""Scanning helpers of the decoder kernel: where a frame body ends, where a run of ADC words ends.

Semantics of the frame checks are those of :mod:`agetdaq.protocol.decode_kernel` (its docstring).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from agetdaq.protocol.decode_tables import _E_FSIZE, _E_FTRUNC, _E_TRAILING

_NIBBLES = np.uint64(0xF000_F000_F000_F000)
_ADC_X4 = np.uint64(0x3000_3000_3000_3000)
_ALL_BITS = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def quad_view(words: np.ndarray) -> np.ndarray:
    """The rows as one flat uint64 array (4 words each) for the fast ADC scan; empty if the
    buffer is not C-contiguous or not 8-byte aligned (the kernel then scans word by word)."""
    if not words.flags.c_contiguous or words.ctypes.data % 8:
        return np.zeros(0, np.uint64)
    flat = words.reshape(-1)
    return flat[: flat.size // 4 * 4].view(np.uint64)


@njit(cache=True, nogil=True, inline="always")
def _adc_run_end(row, quads, base, j, lim):
    """First index in [j, lim) of ``row`` that is not an ADC_SAMPLE word (lim if none).

    ``base`` is the flat index of ``row[0]`` in ``quads`` (4 words per uint64, little-endian):
    a word is an ADC sample iff its top nibble is 3, so 4 words are tested at once; words
    before j in the first group are masked off, and the first other word is found by counting
    trailing zero bits. Without ``quads`` (unaligned buffer) the words are tested in 8s.
    :func:`agetdaq.protocol.decode_machine.decode_batch` holds this scan written out (inlining a
    function that takes arrays costs a refcount round trip per call): keep the two alike.
    """
    n_quads = quads.shape[0]
    g = base + j
    q = g >> 2
    if j < lim and q < n_quads:
        g_lim = base + lim
        y = ((quads[q] & _NIBBLES) ^ _ADC_X4) & (_ALL_BITS << np.uint64(16 * (g & 3)))
        if y == 0:
            q += 1
            while 4 * q + 16 <= g_lim and q + 4 <= n_quads:  # 16 words per step
                z = (
                    ((quads[q] & _NIBBLES) ^ _ADC_X4)
                    | ((quads[q + 1] & _NIBBLES) ^ _ADC_X4)
                    | ((quads[q + 2] & _NIBBLES) ^ _ADC_X4)
                    | ((quads[q + 3] & _NIBBLES) ^ _ADC_X4)
                )
                if z != 0:
                    break
                q += 4
            while 4 * q < g_lim and q < n_quads:
                y = (quads[q] & _NIBBLES) ^ _ADC_X4
                if y != 0:
                    break
                q += 1
        if y != 0:
            return min(4 * q + (trailing_zeros(y) >> 4) - base, lim)
        j = min(4 * q - base, lim)
    else:
        while j + 8 <= lim:
            m = 0
            for k in range(8):
                m |= (row[j + k] >> 12) ^ 3
            if m != 0:
                break
            j += 8
    while j < lim and (row[j] >> 12) == 3:
        j += 1
    return j


@njit(cache=True, nogil=True)
def _frame_body_end(row, off, avail, length, row_bytes, errors):
    """(end of the body, truncated) of the frame at ``row[off]`` with ``avail`` words present.

    Counts FRAME_SIZE_MISMATCH, TRAILING_WORDS and FRAME_TRUNCATED (see decode_kernel).
    """
    size = np.int64(row[off + 1])
    if size != length - 2 * off:
        errors[_E_FSIZE] += 1
    last = avail - 1
    if length <= row_bytes:
        if avail - off >= 3 and row[last] == 0x000F:
            return last, False
        p = off + size // 2 - 1
        if off + 2 <= p < last and row[p] == 0x000F:
            for t in range(p + 1, avail):
                if row[t] != 0:
                    errors[_E_TRAILING] += 1
                    break
            return p, False
    errors[_E_FTRUNC] += 1
    return avail, True
