"""zarr's ``LocalStore``, reading a whole chunk file into a new NumPy array and writing
a big one behind.

Imported only once zarr is known to be installed (the ``dask`` extra), by
:mod:`upconv.zarr_arrays`; a module of its own so that the class pickles by
name to Dask workers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr.storage
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from . import fileio

__all__ = ["LocalStore"]


class LocalStore(zarr.storage.LocalStore):
    """zarr's ``LocalStore`` with a faster read of whole chunk files.

    zarr's own reads a chunk with ``Path.read_bytes``: a new ``bytes`` object,
    whose pages the kernel maps and zeroes one 4 KiB page at a time (12,800
    page faults for a 2048x2048 RGB float32 chunk). A NumPy array that big is
    backed by huge pages (NumPy asks the kernel for them), and ``readinto``
    fills it with a few faults.

    A chunk of 8 MiB or more is written behind (:func:`upconv.fileio.write_at`):
    sent to the disk as it is written and dropped from the page cache, rather
    than left for the kernel to write back. It is written as zarr writes it, to
    a temporary file beside it renamed over it when complete. Everything else
    (byte ranges, listing, smaller chunks, metadata) is zarr's.

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
        if not isinstance(value, Buffer) or len(value) < fileio.WRITE_BEHIND_PIECE:
            return await super().set(key, value)
        if not self._is_open:
            await self._open()
        self._check_writable()
        await asyncio.to_thread(write_whole_file, self.root / key, value)


def write_whole_file(path: Path, value: Buffer) -> None:
    """Write a chunk file as zarr does (a ``.partial`` temporary file beside it, renamed
    over it when complete, removed on failure), written behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o666)
        try:
            fileio.write_at(fd, value.as_buffer_like(), later=str(path))
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_whole_file(path: Path, prototype: BufferPrototype) -> Buffer:
    """The file's bytes, read into a new NumPy array, as a zarr buffer."""
    with open(path, "rb", buffering=0) as handle:
        data = np.empty(os.fstat(handle.fileno()).st_size, np.uint8)
        got = 0
        while got < data.size:  # (a short read: a signal, or a file cut meanwhile)
            more = handle.readinto(data[got:])
            if not more:
                data = data[:got]
                break
            got += more
    return prototype.buffer.from_array_like(data)
