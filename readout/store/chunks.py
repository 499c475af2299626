"""Whole chunks of the run file compressed outside the GIL and written with HDF5's direct chunk
write, so that recording runs on other cores beside the data path.

h5py holds the GIL while HDF5 runs a dataset's filters, so a compressing ``dset[a:b] = rows``
stops every other Python thread for ~1 ms per MB. :class:`DirectChunks` instead copies a chunk's
rows into a buffer of its own, compresses it with Blosc on a pool of threads (numcodecs' Blosc
releases the GIL: the threads run in parallel with the data path and with each other) and hands the
compressed bytes, in the order the chunks came, to one writer thread that resizes the dataset and
stores them with ``write_direct_chunk``: the file is byte for byte what HDF5's own Blosc filter
(hdf5plugin) reads, so the format does not change. A chunk written before it is full (at a flush)
is written again, whole, once more rows have come: never read back.

:class:`InlineWrites` is the plain h5py path (compressions without a Blosc codec here: gzip, lzf).
Both take ``put(dataset, first_row, rows)`` and ``flush(file, wait)``; a failure in a thread is
kept and raised (:class:`ChunkError`) by the next call, so the writer reports it where it reports
its own.

The threads are shared by every writer of the process (created once, daemons); the queue between
them is bounded, so a data path that outruns the disk waits instead of filling the memory.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

COMPRESS_THREADS = max(1, min(4, os.cpu_count() or 1))
MAX_QUEUED = 32  # chunks handed over and not yet on disk (1 MiB each by default)
_BLOSC_CNAMES = {"blosc-lz4": b"lz4", "blosc-zstd": b"zstd"}


class ChunkError(RuntimeError):
    """A chunk could not be compressed or written."""


def codec(name: str, level: int, dtype: np.dtype) -> Callable[[np.ndarray], bytes] | None:
    """The function that turns a chunk's bytes into what the dataset's filter pipeline
    (store.layout.compression_kwargs) would have stored, or None when there is none here."""
    dtype = np.dtype(dtype)
    if name == "none":
        return lambda buf: buf.tobytes()
    cname = _BLOSC_CNAMES.get(name)
    if cname is None:
        return None
    from numcodecs import blosc

    # the shuffle layout.compression_kwargs gives the dataset's Blosc filter
    shuffle = blosc.SHUFFLE if dtype.names is not None else blosc.BITSHUFFLE
    typesize = dtype.itemsize

    def encode(buf: np.ndarray) -> bytes:  # numcodecs releases the GIL off the main thread
        return blosc.compress(buf.view(np.uint8), cname, level, shuffle, 0, typesize)

    return encode


class InlineWrites:
    """Chunks written through h5py in the caller's thread (HDF5 compresses them, GIL held)."""

    def put(self, dset: h5py.Dataset, first: int, rows: np.ndarray, chunk_rows: int) -> None:
        end = first + len(rows)
        if dset.shape[0] < end:
            dset.resize((end,))
        dset[first:end] = rows

    def put_chunks(
        self, dset: h5py.Dataset, first: int, buf: np.ndarray, n_chunks: int, chunk_rows: int
    ) -> None:
        """The first ``n_chunks`` whole chunks of ``buf`` (the caller does not use it again)."""
        self.put(dset, first, buf[: n_chunks * chunk_rows], chunk_rows)

    def buffer(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, np.uint8)

    def flush(self, file: h5py.File, wait: bool = True) -> None:
        file.flush()

    def rows_written(self, dset: h5py.Dataset) -> int:
        return int(dset.shape[0])

    def close(self) -> None:
        pass


class _Pool:
    """Chunk buffers by size, reused: a fresh 1 MiB buffer costs 256 page faults."""

    def __init__(self) -> None:
        self._free: dict[int, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            free = self._free.get(nbytes)
            if free:
                return free.pop()
        return np.empty(nbytes, np.uint8)

    def give(self, buf: np.ndarray) -> None:
        with self._lock:
            free = self._free.setdefault(buf.nbytes, [])
            if len(free) < MAX_QUEUED + COMPRESS_THREADS:
                free.append(buf)

    def give_back(self, buf: np.ndarray | _Shared) -> None:
        """A chunk's buffer after its write (a shared one when its last chunk is written)."""
        if isinstance(buf, _Shared):
            buf.left[0] -= 1
            if buf.left[0]:
                return
            buf = buf.raw
        self.give(buf)


class _Shared:
    """A staging buffer whose whole chunks are written one by one (count of those left)."""

    __slots__ = ("left", "raw")

    def __init__(self, raw: np.ndarray, left: list[int]) -> None:
        self.raw, self.left = raw, left


class _Service:
    """The process's compression pool and writer thread (started on first use)."""

    _instance: _Service | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pool = _Pool()
        self.executor = ThreadPoolExecutor(COMPRESS_THREADS, thread_name_prefix="chunk-compress")
        self.jobs: queue.Queue = queue.Queue(maxsize=MAX_QUEUED)
        self.thread = threading.Thread(target=self._run, name="chunk-writer", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _Service:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _run(self) -> None:
        while True:
            owner, kind, args = self.jobs.get()
            try:
                if owner.error is None:
                    if kind == "chunk":
                        self._write(owner, *args)
                    elif kind == "flush":
                        args[0].flush()
            except BaseException as exc:  # kept for the owner's next call; the thread goes on
                owner.error = f"{type(exc).__name__}: {exc}"
            if kind == "chunk":
                self.pool.give_back(args[4])
            elif kind in ("flush", "mark"):
                args[-1].set()

    @staticmethod
    def _write(
        owner: DirectChunks, dset: h5py.Dataset, first: int, n: int, fut: Future, buf: np.ndarray
    ) -> None:
        write_chunk(dset, first, first + n, fut.result())
        owner.done[dset.name] = first + n


def write_chunk(dset: h5py.Dataset, first: int, end: int, data: bytes) -> None:
    """Store a compressed chunk that starts at row ``first`` and ends (rows present) at ``end``:
    the dataset grows to ``end`` first (chunks come in order)."""
    if dset.shape[0] < end:
        dset.resize((end,))
    dset.id.write_direct_chunk((first,), data)


class DirectChunks:
    """One writer's chunks through the shared compression pool and writer thread (module
    docstring). ``put`` copies the rows, so the caller may reuse its buffer at once."""

    def __init__(self) -> None:
        self.service = _Service.get()
        self.error: str | None = None
        self.done: dict[str, int] = {}  # rows of each dataset on disk (in HDF5)
        self._codecs: dict[str, Callable[[np.ndarray], bytes]] = {}

    def rows_written(self, dset: h5py.Dataset) -> int:
        """Rows of ``dset`` the writer thread has stored (a chunk handed over may still wait)."""
        return self.done.get(dset.name, 0)

    def add(self, dset: h5py.Dataset, encode: Callable[[np.ndarray], bytes]) -> None:
        self._codecs[dset.name] = encode

    def _check(self) -> None:
        if self.error is not None:
            raise ChunkError(self.error)

    def buffer(self, nbytes: int) -> np.ndarray:
        """A staging buffer (uint8), recycled from the ones handed over with put_chunks."""
        return self.service.pool.take(nbytes)

    def put_chunks(
        self, dset: h5py.Dataset, first: int, buf: np.ndarray, n_chunks: int, chunk_rows: int
    ) -> None:
        """The first ``n_chunks`` whole chunks of ``buf``, which is handed over (no copy): the
        caller does not touch it again; it goes back to the pool once they are written."""
        self._check()
        s = self.service
        raw = buf.view(np.uint8).reshape(-1)
        step = chunk_rows * buf.dtype.itemsize
        left = [n_chunks]  # chunks of buf still to write; the last one recycles it
        for k in range(n_chunks):
            view = raw[k * step : (k + 1) * step]
            fut = s.executor.submit(self._codecs[dset.name], view)
            s.jobs.put((self, "chunk", (dset, first + k * chunk_rows, chunk_rows, fut,
                                        _Shared(raw, left))))  # fmt: skip

    def put(self, dset: h5py.Dataset, first: int, rows: np.ndarray, chunk_rows: int) -> None:
        self._check()
        s = self.service
        nbytes = chunk_rows * rows.dtype.itemsize
        buf = s.pool.take(nbytes)
        raw = rows.view(np.uint8).reshape(-1) if len(rows) else buf[:0]
        buf[: raw.size] = raw
        buf[raw.size :] = 0  # a chunk written before it is full: HDF5 ignores rows past the end
        fut = s.executor.submit(self._codecs[dset.name], buf)
        s.jobs.put((self, "chunk", (dset, first, len(rows), fut, buf)))

    def flush(self, file: h5py.File, wait: bool = True) -> None:
        """Flush the file once every chunk handed over so far is written; ``wait`` for it."""
        self._check()
        done = threading.Event()
        self.service.jobs.put((self, "flush", (file, done)))
        if wait:
            done.wait()
            self._check()

    def drain(self) -> None:
        """Wait until every chunk handed over so far is written (no file flush)."""
        done = threading.Event()
        self.service.jobs.put((self, "mark", (done,)))
        done.wait()

    def close(self) -> None:
        self.drain()


def sink_for(direct: bool) -> Any:
    """DirectChunks when asked for (every dataset then needs a codec), else InlineWrites."""
    return DirectChunks() if direct else InlineWrites()
