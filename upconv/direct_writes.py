"""Big files written around the page cache (``O_DIRECT``), by a writer thread, while the
caller computes what comes next.

A Zarr job writes gigabytes of chunk files that nothing reads back soon. Written through
the page cache, every byte is copied into a page the kernel must first find (on a
virtual machine, often one its host must find again), then written back, then dropped
(:class:`upconv.fileio.WriteBehind`): about as much CPU time as the engine spends
computing those bytes (``bench/bench_zarr.py``), and the part of a worker's time that
grows most when two workers run side by side. Written around the page cache, the disk
takes the bytes straight from the process's memory, with no copy and no page of the
cache: PostgreSQL's ``debug_io_direct``, and GNU dd's ``oflag=direct``, write so.

The kernel then asks that each write's memory, length and position in the file be
aligned (to the disk's logical block, :data:`ALIGNMENT` for most disks), and it returns
only once the disk has the bytes. So :class:`DirectWriter` writes from two kinds of
memory, in one thread per process (:func:`wait_for`) that writes while the caller goes
on:

- bytes the caller lends (``kept=True``), aligned, written from where they are, and
  left unchanged by the caller until written (:func:`latest_ticket`, :func:`wait_for`):
  the rows of a band computed into an aligned buffer (:func:`aligned_band`);
- anything else, copied first into buffers of its own (:data:`PIECE` bytes each, page
  aligned), a compressed frame for one; the file's last bytes are written padded to a
  whole block, and the file cut back to its length.

Where the platform has no ``O_DIRECT`` or the file system refuses it, on opening the file
or on its first write (one that asks a larger alignment), the file is written through the
page cache as before, by the same calls (:func:`open_direct` says which).
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from .fileio import vectored_all

__all__ = ["ALIGNMENT", "PAGE", "PIECE", "SMALLEST", "DirectWriter", "open_direct", "aligned_band",
           "latest_ticket", "wait_for"]

#: What the kernel asks a write around the page cache to be aligned to, in memory, length
#: and position: a disk's logical block (512 bytes on most disks; a file system that asks
#: more refuses such a write, and the file is then written through the page cache).
ALIGNMENT = 512
#: Files of this many bytes or more are written around the page cache by their callers
#: (:mod:`upconv.zarr_local`); smaller ones through it, which does not wait for the disk.
SMALLEST = 8 << 20
#: A file's buffers are this big, and page aligned (so their writes are aligned on any disk).
PIECE = 8 << 20
#: At most this many writes are waiting for the writer thread, in one process, before
#: the next one waits for the oldest.
MOST_WAITING = 4
#: The memory page: buffers and bands start on one.
PAGE = mmap.PAGESIZE
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def open_direct(path: str | os.PathLike, flags: int, mode: int = 0o666) -> tuple[int, bool]:
    """``os.open(path, flags, mode)``, with ``O_DIRECT`` where the platform and the file
    system allow it: the descriptor, and whether the file is written around the page cache.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> fd, direct = open_direct(os.path.join(folder, "x"), os.O_WRONLY | os.O_CREAT)
    >>> os.close(fd); direct in (True, False)
    True
    """
    fd = os.open(path, flags, mode)
    if not _O_DIRECT:
        return fd, False
    # Set after opening: a file system without it (tmpfs before Linux 6.6, ramfs) refuses
    # it with EINVAL only once the file is made, and an O_EXCL open could not be retried.
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            os.close(fd)
            raise
        return fd, False
    return fd, True


class _WriterThread:
    """This process's thread that writes around the page cache, in the order given."""

    def __init__(self) -> None:
        self._waiting: deque[Callable[[], None]] = deque()
        self._changed = threading.Condition()
        self.given = self.done = 0
        self._thread: threading.Thread | None = None

    def give(self, write: Callable[[], None]) -> int:
        """Queue ``write`` (which never raises); its ticket (see :func:`wait_for`)."""
        self.wait(self.given - MOST_WAITING + 1)
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="upconv-direct-writes",
                                                daemon=True)
                self._thread.start()
            self._waiting.append(write)
            self.given += 1
            self._changed.notify_all()
            return self.given

    def wait(self, ticket: int) -> None:
        with self._changed:
            while self.done < min(ticket, self.given):  # (a forked child's: none given)
                self._changed.wait()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting:
                    self._changed.wait()
                write = self._waiting.popleft()
            write()
            with self._changed:
                self.done += 1
                self._changed.notify_all()


_writer = _WriterThread()


def _new_writer_in_child() -> None:  # (a forked child has no writer thread)
    global _writer, _free_lock
    _writer = _WriterThread()
    _free_lock = threading.Lock()  # (the parent's thread may have held it)
    _free.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_writer_in_child)


def latest_ticket() -> int:
    """The ticket of the latest write given to this process's writer thread: once
    :func:`wait_for` returns for it, every write given so far is done."""
    return _writer.given


def wait_for(ticket: int) -> None:
    """Wait until the writes given up to ``ticket`` (:func:`latest_ticket`) are done."""
    _writer.wait(ticket)


#: Free page-aligned buffers of :data:`PIECE` bytes, kept for reuse (at most
#: :data:`_MOST_FREE`).
_free: list[np.ndarray] = []
_free_lock = threading.Lock()
_MOST_FREE = 2 * MOST_WAITING


def _take_buffer() -> np.ndarray:
    with _free_lock:
        if _free:
            return _free.pop()
    return np.frombuffer(mmap.mmap(-1, PIECE), np.uint8)


def _give_back(buffer: np.ndarray) -> None:
    with _free_lock:
        if len(_free) < _MOST_FREE:
            _free.append(buffer)


def drop_buffers() -> None:
    """Let go of the free buffers kept for reuse (a job's last step)."""
    with _free_lock:
        _free.clear()


def aligned_band(size: int) -> np.ndarray:
    """A new page-aligned uint8 array of ``size`` bytes (an anonymous mapping), for bands
    of rows written around the page cache without a copy (``kept=True``)."""
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), np.uint8)[:size]


def _address(view: memoryview) -> int:
    return np.frombuffer(view, np.uint8).ctypes.data if len(view) else 0


class DirectWriter:
    """Bytes written one after another from ``position`` into a file opened with
    :func:`open_direct`, by this process's writer thread (around the page cache when
    ``direct``, else through it): :meth:`write` returns as soon as the bytes are given
    to the thread, :meth:`finish` once all are written. Errors (a full disk, an I/O
    error) come from the next :meth:`write` or :meth:`finish` after the write that
    met them.

    Examples
    --------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x")
    >>> fd, direct = open_direct(path, os.O_WRONLY | os.O_CREAT)
    >>> writer = DirectWriter(fd, direct)
    >>> writer.write(b"spam")
    >>> writer.write([b" and ", b"eggs"])
    >>> writer.finish()
    >>> os.close(fd)
    >>> from pathlib import Path
    >>> Path(path).read_bytes()
    b'spam and eggs'
    """

    def __init__(self, fd: int, direct: bool, position: int = 0) -> None:
        self.fd, self.direct, self.position = fd, direct, position
        self._buffer: np.ndarray | None = None  # this file's bytes not yet given
        self._filled = 0
        self._ticket = 0  # this file's last write given
        self.error: OSError | None = None

    def write(self, data: object, kept: bool = False) -> None:
        """Write ``data`` (a bytes-like object, or a list of them) at the next position.

        With ``kept``, the caller leaves the bytes unchanged until they are written
        (:func:`wait_for` a ticket from :func:`latest_ticket` taken after this call):
        aligned ones are then written from where they are, without a copy.
        """
        self._raise_error()
        views = [piece if isinstance(piece, memoryview) and piece.format == "B"
                 and piece.ndim == 1 else memoryview(piece).cast("B")
                 for piece in (data if isinstance(data, list) else [data])]
        # (lent pieces' addresses told from the first and the lengths: all rows of one
        # buffer, as callers lend them; a write that is not aligned after all is refused
        # by the kernel, and the file then goes through the page cache)
        if (kept and self.direct and self._filled == 0 and self.position % ALIGNMENT == 0
                and views and _address(views[0]) % ALIGNMENT == 0
                and all(len(v) % ALIGNMENT == 0 for v in views)):
            self._give(views, self.position, None)
            self.position += sum(len(v) for v in views)
            return
        for view in views:
            while len(view):
                if self._buffer is None:
                    self._buffer, self._filled = _take_buffer(), 0
                count = min(len(view), PIECE - self._filled)
                self._buffer[self._filled:self._filled + count] = np.frombuffer(
                    view[:count], np.uint8)
                self._filled += count
                self.position += count
                view = view[count:]
                if self._filled == PIECE:
                    self._give_buffer()

    def space(self) -> np.ndarray:
        """The free part of the file's current buffer (a uint8 array, at least one byte),
        for the caller to write its next bytes into, and then say how many with
        :meth:`filled` (a compressor's output, with no copy of its own)."""
        self._raise_error()
        if self._buffer is None:
            self._buffer, self._filled = _take_buffer(), 0
        return self._buffer[self._filled:]

    def filled(self, count: int) -> None:
        """The first ``count`` bytes of :meth:`space` were written: they are the file's
        next bytes."""
        assert self._buffer is not None and self._filled + count <= PIECE
        self._filled += count
        self.position += count
        if self._filled == PIECE:
            self._give_buffer()

    def _give_buffer(self) -> None:
        """Give the file's buffer to the writer thread (its last one padded with zeros
        to a whole page, which :meth:`finish` cuts off again)."""
        buffer, filled = self._buffer, self._filled
        assert buffer is not None
        self._buffer, self._filled = None, 0
        length = -(-filled // PAGE) * PAGE if self.direct else filled
        buffer[filled:length] = 0
        self._give([memoryview(buffer)[:length]], self.position - filled, buffer)

    def _give(self, views: list[memoryview], position: int, buffer: np.ndarray | None) -> None:
        def write() -> None:
            try:
                if self.error is None:
                    self._write_all(views, position)
            except OSError as exc:
                self.error = exc
            except BaseException as exc:  # (never let the writer thread die)
                self.error = OSError(errno.EIO, f"{type(exc).__name__}: {exc}")
            finally:
                if buffer is not None:
                    _give_back(buffer)

        self._ticket = _writer.give(write)

    def _write_all(self, views: list[memoryview], position: int) -> None:
        try:
            vectored_all(os.pwritev, self.fd, views, position)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not self.direct:
                raise
            # a file system that asks a larger alignment: through the page cache, then,
            # from the start (the same bytes at the same places)
            import fcntl

            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
            self.direct = False
            vectored_all(os.pwritev, self.fd, views, position)

    def finish(self) -> None:
        """Write the rest and wait until every byte is written; the file ends at the last
        byte written (a padded last block cut off)."""
        self._raise_error()
        end, padded = self.position, self._buffer is not None and self.direct
        if self._buffer is not None:
            self._give_buffer()
        _writer.wait(self._ticket)
        self._raise_error()
        if padded:
            os.ftruncate(self.fd, end)

    def abandon(self) -> None:
        """Wait until the writes given are done (before the file is closed), whatever
        their outcome, and give the buffer back. Every write given so far in the process
        is waited for: one given as a Ctrl-C came may not have its ticket recorded."""
        if self._buffer is not None:
            _give_back(self._buffer)
            self._buffer = None
        _writer.wait(_writer.given)

    def _raise_error(self) -> None:
        if self.error is not None:
            _writer.wait(self._ticket)
            raise self.error
