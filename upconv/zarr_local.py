"""zarr's ``LocalStore``, reading a whole chunk file into a reused NumPy array and writing
a big one around the page cache.

Imported only once zarr is known to be installed (the ``dask`` extra), by
:mod:`upconv.zarr_arrays`; a module of its own so that the class pickles by
name to Dask workers.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr.storage
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from . import direct_writes, fileio
from .direct_writes import DirectWriter, open_direct
from .memory import ReusedArrays

__all__ = ["ChunkFile", "LocalStore", "drop_read_buffers", "remove_partial_files"]

#: Reads of this many bytes or more go into a reused array (:func:`_read_buffer`).
REUSED_READ_BYTES = 8 << 20
#: At most this many such arrays are kept (a thread's read at a time holds one).
_MOST_READ_BUFFERS = 4
_reads = ReusedArrays(most=_MOST_READ_BUFFERS, smallest=REUSED_READ_BYTES)


class LocalStore(zarr.storage.LocalStore):
    """zarr's ``LocalStore`` with a faster read of whole chunk files.

    zarr's own reads a chunk with ``Path.read_bytes``: a new ``bytes`` object,
    whose pages the kernel maps and zeroes one 4 KiB page at a time (12,800
    page faults for a 2048x2048 RGB float32 chunk). A NumPy array that big is
    backed by huge pages (NumPy asks the kernel for them), and ``readinto``
    fills it with a few faults.

    A chunk file of 8 MiB or more is read into an array read into before, once
    nothing refers to that array any more (:func:`_read_buffer`): a fresh one
    would be a new mapping the kernel zeroes before the file's bytes are copied
    over the zeros, which took half a block's time to read its core in
    ``bench/bench_zarr.py``.

    A chunk of :data:`upconv.direct_writes.SMALLEST` bytes (8 MiB) or more is
    written around the page cache (:mod:`upconv.direct_writes`): the disk takes
    the bytes from the process's memory, rather than the kernel copying them into
    its cache to write back later. It is written as zarr writes it, to a
    temporary file beside it renamed over it when complete (:class:`ChunkFile`).
    Everything else (byte ranges, listing, smaller chunks, metadata) is zarr's.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> array = zarr.create_array(LocalStore(folder), shape=(3, 4), chunks=(2, 2),
    ...                           dtype="i2")
    >>> array[...] = np.arange(12).reshape(3, 4)
    >>> zarr.open_array(LocalStore(folder, read_only=True))[2]
    array([ 8,  9, 10, 11], dtype=int16)
    """

    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: Any = None) -> Buffer | None:
        if byte_range is not None:
            return await super().get(key, prototype, byte_range)
        if prototype is None:
            prototype = default_buffer_prototype()
        if not self._is_open:
            await self._open()
        try:
            return await asyncio.to_thread(read_whole_file, self.root / key, prototype)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def set(self, key: str, value: Buffer) -> None:
        if (not isinstance(value, Buffer) or len(value) < direct_writes.SMALLEST
                or not hasattr(os, "pwritev")):  # (positioned writes: not on Windows)
            return await super().set(key, value)
        if not self._is_open:
            await self._open()
        self._check_writable()
        await asyncio.to_thread(write_whole_file, self.root / key, value)


def write_whole_file(path: Path, value: Buffer) -> None:
    """Write a chunk file as zarr does (a ``.partial`` temporary file beside it, renamed
    over it when complete, removed on failure), around the page cache
    (:class:`ChunkFile`)."""
    data = value.as_buffer_like()
    with ChunkFile(path, memoryview(data).nbytes, direct=True) as chunk:
        chunk.write(data, kept=True)  # (written before this returns)
        chunk.commit()


class ChunkFile:
    """A chunk file written as zarr writes one, a piece at a time: into a temporary file
    beside it (``KEY.<32 hex digits>.partial``), and renamed over it by :meth:`commit`
    once every byte is on its way to the disk; removed by :meth:`discard`, or on leaving
    the ``with`` block uncommitted.

    With ``direct``, the file is written around the page cache, by the process's
    writer thread while the caller goes on
    (:class:`upconv.direct_writes.DirectWriter`: :meth:`commit` waits for its
    writes); else written behind (:class:`upconv.fileio.WriteBehind`: sent to the
    disk as it is written and dropped from the page cache).

    The file's disk space (``size`` bytes, or as many as it may take: the file is
    cut to what was written; none with ``size`` 0) is allocated first, in one request
    (:func:`upconv.fileio.allocate_space`, where the file system can): it then has
    no blocks to find page by page as the bytes are copied in (0.96 of the time on
    1 worker and 0.95 on 2 in ``bench/bench_zarr.py --codec none``, side by side
    with the code before), and a disk too full fails before any byte
    is written.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "c" / "0"
    >>> with ChunkFile(path, 9) as chunk:
    ...     chunk.write(b"spam")
    ...     chunk.write([b" ", b"eggs"])
    ...     chunk.commit()
    >>> path.read_bytes(), sorted(p.name for p in path.parent.iterdir())
    (b'spam eggs', ['0'])
    """

    def __init__(self, path: Path, size: int, direct: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.size = path, size
        self.committed = False
        self.temporary = path.with_suffix(f".{uuid.uuid4().hex}.partial")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self.writer: fileio.WriteBehind | DirectWriter | None = None
        if direct:  # (where the file system takes O_DIRECT; else written behind)
            self.fd, direct = open_direct(self.temporary, flags)
        else:
            self.fd = os.open(self.temporary, flags, 0o666)
        try:
            if size:
                fileio.allocate_space(self.fd, size)
            self.writer = (DirectWriter(self.fd, True) if direct
                           else fileio.WriteBehind(self.fd, later=str(path)))
        except BaseException:
            self.discard()
            raise

    def write(self, data: object, kept: bool = False) -> None:
        """Write the next bytes (a bytes-like object, or a list of them); with ``kept``
        (written around the page cache), bytes the caller leaves unchanged until they
        are written (:class:`upconv.direct_writes.DirectWriter`)."""
        if isinstance(self.writer, DirectWriter):
            self.writer.write(data, kept)
        else:
            self.writer.write(data)

    def commit(self) -> None:
        """Finish the file and rename it over the chunk's own name."""
        assert self.fd is not None and not self.committed
        self.writer.finish()
        position = self.writer.position
        if position < self.size:  # (compressed: less than was allocated)
            os.ftruncate(self.fd, position)
        fd, self.fd = self.fd, None
        os.close(fd)
        os.replace(self.temporary, self.path)
        self.committed = True

    def discard(self) -> None:
        """Close and remove the temporary file, unless committed (nothing under the
        chunk's name changes)."""
        if self.fd is not None:
            if isinstance(self.writer, DirectWriter):
                self.writer.abandon()  # (its writes done before the file is closed)
            fd, self.fd = self.fd, None
            os.close(fd)
        if not self.committed:
            self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> ChunkFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


#: The name of a :class:`ChunkFile`'s temporary file: ``KEY.<32 hex digits>.partial``.
_PARTIAL_NAME = re.compile(r".+\.[0-9a-f]{32}\.partial")


def remove_partial_files(root: str | os.PathLike) -> int:
    """Remove the temporary chunk files of :class:`ChunkFile` left in the store at
    ``root`` by writers that died mid-chunk (a Dask worker killed: its task ran again
    elsewhere, and wrote the chunk whole under its own temporary name); how many.

    For a job's end, when no writer is left; other files are not touched.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "c" / "0").mkdir(parents=True)
    >>> for name in ["0", "0.0123456789abcdef0123456789abcdef.partial", "notes.partial"]:
    ...     _ = (root / "c" / "0" / name).write_bytes(b"")
    >>> remove_partial_files(root), sorted(p.name for p in (root / "c" / "0").iterdir())
    (1, ['0', 'notes.partial'])
    """
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if _PARTIAL_NAME.fullmatch(name):
                try:
                    Path(folder, name).unlink(missing_ok=True)
                except OSError:  # (left: litter, not a fault of the job)
                    continue
                removed += 1
    return removed


def read_whole_file(path: Path, prototype: BufferPrototype) -> Buffer:
    """The file's bytes, read into a NumPy array (:func:`_read_buffer`), as a zarr buffer."""
    with open(path, "rb", buffering=0) as handle:
        data = _read_buffer(os.fstat(handle.fileno()).st_size)
        got = 0
        while got < data.size:  # (a short read: a signal, or a file cut meanwhile)
            more = handle.readinto(data[got:])
            if not more:
                data = data[:got]
                break
            got += more
    return prototype.buffer.from_array_like(data)


def _read_buffer(size: int) -> np.ndarray:
    """A uint8 array of ``size`` bytes to read a file into (contents undefined): under
    :data:`REUSED_READ_BYTES` a new one, above a view of one kept for reads and free
    again (:class:`upconv.memory.ReusedArrays`)."""
    return _reads.get(size)


def drop_read_buffers() -> None:
    """Let go of the arrays kept for reads (a job's last step, here and on each worker)."""
    _reads.clear()


def read_raw_part(path: Path, chunk_shape: tuple[int, ...], local: tuple[slice, ...],
                  out: np.ndarray, fill: Any) -> bool:
    """``out[...] = chunk[local]`` for a chunk stored raw (C order, the whole chunk's
    shape: Zarr 3's ``bytes`` codec alone) in the file ``path``, read from the file
    straight into ``out`` (``fill`` where the file is absent); False, with nothing read,
    where ``out`` cannot take the runs of bytes as they lie in the file (the caller reads
    through zarr then).

    The bytes ``local`` selects lie in runs, one per index of the axes before the last
    one it cuts: each is read with ``preadv(2)`` straight into its place in ``out`` (a
    row of a window, say), the gaps between runs into a small buffer read over and over,
    or, where a gap is much longer than the run (a column a few values wide, for a
    block's edge), left out by starting the next read past it. zarr's own read is the
    whole file into a new buffer, then a copy into ``out``: twice the bytes through
    memory, and all of them for an edge a few values deep.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "0"
    >>> _ = path.write_bytes(np.arange(24, dtype="<i4").tobytes())
    >>> out = np.zeros((2, 2), np.int32)
    >>> read_raw_part(path, (4, 6), (slice(1, 3), slice(4, 6)), out, 0), out.tolist()
    (True, [[10, 11], [16, 17]])
    """
    item = out.dtype.itemsize
    shape = tuple(s.stop - s.start for s in local)
    assert out.shape == shape, (out.shape, shape)
    # the last axis `local` cuts; the run: its selected length times what follows it
    cut = max((axis for axis, (s, n) in enumerate(zip(local, chunk_shape, strict=True))
               if (s.start, s.stop) != (0, n)), default=0)
    strides = [int(np.prod(chunk_shape[axis + 1:], dtype=np.int64)) * item
               for axis in range(len(chunk_shape))]
    if not out.size:
        return True
    # the bytes selected are sparse in the file (a column a few values wide): mapped
    sparse = out.nbytes * _SPARSE < (
        sum((s.stop - 1 - s.start) * stride for s, stride in zip(local, strides, strict=True))
        + item)
    # ... or of a later axis, where `out` holds those runs apart (a row of a window)
    while not sparse and not (out[(0,) * cut] if cut else out).flags.c_contiguous:
        cut += 1
        if cut == out.ndim:  # (not even its last axis contiguous)
            return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # (as zarr's get)
        out[...] = fill
        return True
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):  # (absent, as zarr's get takes it)
            out[...] = fill
            return True
        expected = int(np.prod(chunk_shape, dtype=np.int64)) * item
        size = status.st_size
        if size != expected:
            raise ValueError(f"{path.name}: a raw chunk of {size} bytes where "
                             f"{expected} are expected")
        if sparse:
            _copy_mapped(fd, size, chunk_shape, local, out)
        else:
            _read_runs(fd, _runs(out, local, strides, cut), shape[cut] * strides[cut])
    finally:
        os.close(fd)
    return True


#: Bytes selected from a raw chunk file are mapped rather than read when they are fewer
#: than one in this many of the bytes they span.
_SPARSE = 8


def _copy_mapped(fd: int, size: int, chunk_shape: tuple[int, ...], local: tuple[slice, ...],
                 out: np.ndarray) -> None:
    """``out[...] = chunk[local]`` through a read-only mapping of the file: the kernel
    maps the pages the selection touches (from the page cache), and only the values
    selected are copied, where reading the bytes they span would copy them all."""
    mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ) if hasattr(mmap, "PROT_READ") else \
        mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        chunk = np.frombuffer(mapping, out.dtype).reshape(chunk_shape)
        try:
            out[...] = chunk[local]
        finally:
            del chunk  # (no view of the mapping may outlive it)
    finally:
        mapping.close()


def _runs(out: np.ndarray, local: tuple[slice, ...], strides: list[int], cut: int
          ) -> list[tuple[int, memoryview]]:
    """Each run's offset in the chunk file and the bytes of ``out`` it fills."""
    base = sum(s.start * stride for s, stride in zip(local, strides, strict=True))
    runs = []
    for index in np.ndindex(*out.shape[:cut]):
        offset = base + sum(i * stride for i, stride in zip(index, strides, strict=False))
        runs.append((offset, memoryview(out[index] if cut else out).cast("B")))
    return runs


#: A gap between two runs read into a scratch buffer (one read for both) up to this many
#: bytes, and at most :data:`_GAP_PER_RUN` times the run; a longer one is left out.
_LONGEST_GAP = 1 << 18
_GAP_PER_RUN = 4


def _read_runs(fd: int, runs: list[tuple[int, memoryview]], run: int) -> None:
    """Read each run into its bytes: one read for runs whose gaps are short (read into a
    scratch buffer), a new one past each long gap (:func:`upconv.fileio.vectored_all`)."""
    longest = min(_LONGEST_GAP, _GAP_PER_RUN * run)
    scratch = memoryview(bytearray(longest)) if len(runs) > 1 else None
    start, pieces, end = runs[0][0], [], runs[0][0]
    for offset, view in runs:
        gap = offset - end
        if pieces and gap > longest:
            fileio.vectored_all(os.preadv, fd, pieces, start)
            start, pieces = offset, []
        elif gap:
            pieces.append(scratch[:gap])
        pieces.append(view)
        end = offset + len(view)
    fileio.vectored_all(os.preadv, fd, pieces, start)
