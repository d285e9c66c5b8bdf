"""Writing a big new file around the page cache (``O_DIRECT``), while its bytes are still
being computed.

A buffered write copies every byte into the page cache, and the kernel then
writes the cache back to the disk and reclaims it: for a chunk file of a few
hundred megabytes that is as much CPU time as computing it (``perf`` on
``bench/bench_zarr.py``'s workers). A file opened with ``O_DIRECT`` is written
by the disk straight from the process's memory, in pieces aligned to
:data:`ALIGNMENT` bytes. Those writes wait for the disk, so they are made by a
thread of this module's, a piece at a time as the caller says its bytes are
final (:meth:`DirectWrite.ready`), while the caller computes the next ones;
:meth:`DirectWrite.finish` waits for the last. This is how databases
(PostgreSQL's ``debug_io_direct``, RocksDB's ``use_direct_io_for_flush_and_compaction``)
and GNU dd (``oflag=direct``) write big files.

A piece whose bytes do not start on an aligned address is copied first into a
small aligned buffer of the thread's; the file's last partial block is written
padded to a whole one and the file then cut to its size. Where the platform or
the file system has no ``O_DIRECT`` (macOS, tmpfs), or refuses a write made
with it, the file is written as any other (:func:`upconv.fileio.write_at`,
written behind). The file is a new one, made by the caller's path, and it is
never read before it is finished: nothing mixes cached and direct I/O on it.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from . import fileio

__all__ = ["ALIGNMENT", "DIRECT_PIECE", "DirectWrite", "write_file_direct"]

#: Direct writes start, and (but for the file's last) end, on multiples of this many bytes
#: in the file and in memory (Linux's page size; any disk's logical block divides it).
ALIGNMENT = 4096
#: The bytes of one direct write (a multiple of :data:`ALIGNMENT`).
DIRECT_PIECE = 8 << 20
#: Writes on their way to the disk at once, in this process (two keep the disk busy
#: between pieces).
_WRITERS = 2

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
#: Aligned buffers for pieces that must be copied first, shared by the writer threads.
_bounce: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
_bounce_made = 0


def _forget_writers() -> None:
    """In a forked child: the parent's writer threads are not there (and a lock one of
    them held would stay held)."""
    global _pool, _pool_lock, _bounce, _bounce_made
    _pool, _pool_lock = None, threading.Lock()
    _bounce, _bounce_made = queue.SimpleQueue(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers)


def _writers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="upconv-direct-write")
        return _pool


def aligned_empty(size: int) -> np.ndarray:
    """A uint8 array of ``size`` bytes whose first byte is on an :data:`ALIGNMENT` boundary
    (contents undefined).

    Examples
    --------
    >>> aligned_empty(10).ctypes.data % ALIGNMENT
    0
    """
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size]


def _direct_flag() -> int:
    return getattr(os, "O_DIRECT", 0)


class DirectWrite:
    """A new file of ``len(data)`` bytes written from ``data`` around the page cache, piece
    by piece as the caller fills ``data`` (:meth:`ready`), then :meth:`finish`\\ ed.

    The file is created at ``path`` (which must not exist) with its whole size
    reserved (:func:`upconv.fileio.reserve_space`: a full disk fails here). A
    failed write fails :meth:`finish`; :meth:`abandon` stops the writes and
    removes the file. Without ``O_DIRECT``, :meth:`finish` writes it all with
    :func:`upconv.fileio.write_at`.

    Examples
    --------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "spam")
    >>> data = np.arange(10000, dtype=np.uint8)
    >>> writing = DirectWrite(path, data)
    >>> writing.ready(8192)  # the first 8192 bytes may go
    >>> writing.finish()
    >>> bool((np.fromfile(path, np.uint8) == data).all())
    True
    """

    def __init__(self, path: str, data: np.ndarray | memoryview | bytes) -> None:
        self.path = str(path)
        self._data = memoryview(data).cast("B")
        self._sent = 0  # bytes handed to the writer threads
        self._writes: list[Future] = []
        self.direct = False
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                           | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            if _direct_flag() and len(self._data) >= ALIGNMENT:
                # Turned on once the file is made: a file system without O_DIRECT refuses
                # it here (EINVAL), where an open() with it would fail after making the
                # file (Linux), and a second, exclusive, open would then fail too.
                self.direct = _set_direct(self._fd, True)
            fileio.reserve_space(self._fd, len(self._data))
        except BaseException:
            self.abandon()
            raise

    def ready(self, end: int) -> None:
        """Bytes ``[0, end)`` of ``data`` are final: start writing the whole pieces among
        them that are not yet on their way."""
        if not self.direct:
            return
        end = min(end, len(self._data)) // ALIGNMENT * ALIGNMENT
        pool = _writers()
        while end - self._sent >= DIRECT_PIECE or (end > self._sent and end == len(
                self._data) // ALIGNMENT * ALIGNMENT):
            stop = min(end, self._sent + DIRECT_PIECE)
            self._writes.append(pool.submit(self._write_piece, self._sent, stop))
            self._sent = stop

    def finish(self) -> None:
        """Write whatever is left, wait until every byte is written, and close the file
        (an :class:`OSError` if any write failed; the file is then removed)."""
        try:
            if self.direct:
                self.ready(len(self._data))
                tail = len(self._data) - self._sent
                if tail:  # the last partial block: padded to a whole one, then cut
                    self._writes.append(_writers().submit(self._write_piece, self._sent,
                                                          len(self._data)))
                try:
                    for write in self._writes:
                        write.result()
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._without_direct()  # (a file system that refuses direct writes)
                else:
                    if tail:
                        os.ftruncate(self._fd, len(self._data))
            else:
                fileio.write_at(self._fd, self._data, 0)
        except BaseException:
            self.abandon()
            raise
        fd, self._fd = self._fd, -1
        os.close(fd)

    def _without_direct(self) -> None:
        """Write the whole file again, as any other (every direct write waited for)."""
        for write in self._writes:
            write.exception()
        self.direct = _set_direct(self._fd, False)
        os.ftruncate(self._fd, len(self._data))
        fileio.write_at(self._fd, self._data, 0)

    def abandon(self) -> None:
        """Stop: wait for the writes already started, close and remove the file."""
        for write in self._writes:
            write.cancel()
        for write in self._writes:
            if not write.cancelled():
                try:
                    write.result()
                except Exception:
                    pass
        try:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _write_piece(self, start: int, stop: int) -> None:
        piece = self._data[start:stop]
        address = np.frombuffer(piece, np.uint8).ctypes.data if len(piece) else 0
        length = -(-len(piece) // ALIGNMENT) * ALIGNMENT
        if address % ALIGNMENT == 0 and length == len(piece):
            fileio.pwrite_all(self._fd, piece, start)
            return
        bounce = _bounce_buffer(length)
        try:
            bounce[:len(piece)] = np.frombuffer(piece, np.uint8)
            bounce[len(piece):length] = 0
            fileio.pwrite_all(self._fd, memoryview(bounce[:length]), start)
        finally:
            _bounce.put(bounce)


def _bounce_buffer(size: int) -> np.ndarray:
    """An aligned buffer of ``size`` bytes or more, for one writer thread's piece (at most
    one per writer thread is made; give it back to ``_bounce``)."""
    global _bounce_made
    with _pool_lock:
        make = _bounce_made < _WRITERS
        if make:
            _bounce_made += 1
    if not make:
        bounce = _bounce.get()
        if bounce.size >= size:
            return bounce
    try:
        return aligned_empty(max(size, DIRECT_PIECE))
    except BaseException:  # (none made: let another be made in its place)
        with _pool_lock:
            _bounce_made -= 1
        raise


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for an open file; whether it is on (False where the file
    system refuses it, EINVAL)."""
    import fcntl  # (POSIX, as O_DIRECT is)

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _direct_flag() if on else
                    flags & ~_direct_flag())
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    return on


def write_file_direct(path: str, data: np.ndarray | memoryview | bytes) -> None:
    """Write the new file ``path`` with ``data``, around the page cache (:class:`DirectWrite`).

    Examples
    --------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "eggs")
    >>> write_file_direct(path, b"spam" * 3000)
    >>> from pathlib import Path
    >>> Path(path).read_bytes() == b"spam" * 3000
    True
    """
    writing = DirectWrite(path, data)
    writing.finish()
