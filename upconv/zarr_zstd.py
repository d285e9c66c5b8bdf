"""zarr's zstd codec, compressing and decompressing into arrays kept for reuse.

zarr's ``ZstdCodec`` calls numcodecs' ``Zstd``, whose every result is a new
``bytes`` object: for a 4096x4096x3 float32 chunk, a 200 MB mapping whose pages
the kernel finds and zeroes as zstd first writes into them. On this project's
benchmark machine that was over a quarter of the time to compress such a chunk,
and half the time to decompress a 2048x2048x3 one (``bench/bench_zarr_codec.py``
times both ways). :class:`ReusingZstdCodec` is the same codec (the same
metadata, the same configuration, the same compressed bytes) with its results
in arrays kept and handed out again once nothing refers to them
(:class:`upconv.memory.ReusedArrays`).

It calls libzstd's own one-shot functions (``ZSTD_compress2``,
``ZSTD_decompressDCtx``), as numcodecs does, but with an output buffer of our
choosing, which numcodecs' API does not take. They are looked up with ctypes:
first in the copy of libzstd numcodecs carries, which is the one zarr's codec
runs (so the chunks are byte for byte zarr's own), else in the system's
``libzstd``; where there is neither, the codec is zarr's own.

Imported only once zarr is known to be installed (the ``dask`` extra), by
:mod:`upconv.zarr_arrays`; a module of its own so that the codec pickles by
name to Dask workers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from zarr.codecs import ZstdCodec

from .memory import ReusedArrays

__all__ = ["FrameWriter", "ReusingZstdCodec", "reusing_codecs", "reusing_compressors",
           "drop_codec_buffers", "zstd_library"]

# zstd.h: ZSTD_c_compressionLevel, ZSTD_c_checksumFlag; ZSTD_CONTENTSIZE_UNKNOWN, _ERROR;
# ZSTD_reset_session_only; ZSTD_e_continue, ZSTD_e_end
_COMPRESSION_LEVEL, _CHECKSUM_FLAG = 100, 201
_RESET_SESSION = 1
_CONTINUE, _END = 0, 2
_CONTENT_SIZE_UNKNOWN, _CONTENT_SIZE_ERROR = 2**64 - 1, 2**64 - 2

#: Results at least this big go into kept arrays (smaller ones are cheap to make).
REUSED_BYTES = 1 << 20
#: One set for both ways: a task's chunks are decompressed before its own are
#: compressed, so one array (grown to the bigger) serves both, where two would keep a
#: decompressed chunk's worth more memory for the job.
_results = ReusedArrays(most=4, smallest=REUSED_BYTES)


class _InBuffer(ctypes.Structure):
    """zstd.h's ``ZSTD_inBuffer``."""

    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    """zstd.h's ``ZSTD_outBuffer``."""

    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _LibZstd:
    """The few libzstd functions the codec calls, with their ctypes signatures."""

    def __init__(self, library: ctypes.CDLL, path: str) -> None:
        size, pointer = ctypes.c_size_t, ctypes.c_void_p

        def bind(name: str, argtypes: list[Any], restype: Any) -> Any:
            function = getattr(library, name)
            function.argtypes, function.restype = argtypes, restype
            return function

        self.path = path
        self.compress_bound = bind("ZSTD_compressBound", [size], size)
        self.create_cctx = bind("ZSTD_createCCtx", [], pointer)
        self.free_cctx = bind("ZSTD_freeCCtx", [pointer], size)
        self.set_parameter = bind("ZSTD_CCtx_setParameter", [pointer, ctypes.c_int,
                                                             ctypes.c_int], size)
        self.compress2 = bind("ZSTD_compress2", [pointer, pointer, size, pointer, size], size)
        self.create_dctx = bind("ZSTD_createDCtx", [], pointer)
        self.free_dctx = bind("ZSTD_freeDCtx", [pointer], size)
        self.decompress_dctx = bind("ZSTD_decompressDCtx",
                                    [pointer, pointer, size, pointer, size], size)
        self.decompressed_size = bind("ZSTD_findDecompressedSize", [pointer, size],
                                      ctypes.c_ulonglong)
        self.reset = bind("ZSTD_CCtx_reset", [pointer, ctypes.c_int], size)
        self.set_pledged_size = bind("ZSTD_CCtx_setPledgedSrcSize",
                                     [pointer, ctypes.c_ulonglong], size)
        self.compress_stream2 = bind("ZSTD_compressStream2",
                                     [pointer, ctypes.POINTER(_OutBuffer),
                                      ctypes.POINTER(_InBuffer), ctypes.c_int], size)
        self.is_error = bind("ZSTD_isError", [size], ctypes.c_uint)
        self.error_name = bind("ZSTD_getErrorName", [size], ctypes.c_char_p)

    def check(self, code: int) -> int:
        """``code``, a libzstd result, or :class:`RuntimeError` with zstd's own words."""
        if self.is_error(code):
            raise RuntimeError(f"zstd: {self.error_name(code).decode()}")
        return code


class _Context:
    """A libzstd context (compressing or decompressing), freed with this object."""

    def __init__(self, create: Any, free: Any) -> None:
        self.pointer, self._free = create(), free
        if not self.pointer:
            raise MemoryError("zstd: no memory for a context")

    def __del__(self) -> None:
        self._free(self.pointer)


#: Each thread's contexts, reused from chunk to chunk; a thread's go when it ends.
_contexts = threading.local()


def _context(kind: str, library: _LibZstd) -> int:
    context = getattr(_contexts, kind, None)
    if context is None:
        context = (_Context(library.create_cctx, library.free_cctx) if kind == "compressing"
                   else _Context(library.create_dctx, library.free_dctx))
        setattr(_contexts, kind, context)
    return context.pointer


@functools.cache
def zstd_library() -> _LibZstd | None:
    """libzstd, as the codec calls it: numcodecs' own copy, else the system's; None
    where neither can be found."""
    candidates = []
    try:
        import numcodecs.zstd

        candidates.append(numcodecs.zstd.__file__)
    except ImportError:  # pragma: no cover - zarr needs numcodecs
        pass
    system = ctypes.util.find_library("zstd")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            return _LibZstd(ctypes.CDLL(path), path)
        except (OSError, AttributeError):  # not loadable, or without these functions
            continue
    return None


def _bytes_of(buffer: Any) -> np.ndarray:
    """A zarr buffer's bytes as a contiguous uint8 array (a view where it is one)."""
    return np.ascontiguousarray(buffer.as_numpy_array()).reshape(-1).view(np.uint8)


def _set_frame_parameters(library: _LibZstd, context: int, level: int, checksum: bool
                          ) -> None:
    """A compressing context set as numcodecs' ``Zstd(level, checksum)`` sets its own."""
    library.check(library.set_parameter(context, _COMPRESSION_LEVEL, level))
    library.check(library.set_parameter(context, _CHECKSUM_FLAG, 1 if checksum else 0))


def compress(data: np.ndarray, level: int, checksum: bool) -> np.ndarray:
    """``data`` compressed as one zstd frame, as numcodecs' ``Zstd(level, checksum)``
    compresses it, into a kept array (a view of it is returned; a copy of its own when
    it is at most half the size zstd must allow for, so that a store keeping it keeps no
    more).

    Examples
    --------
    >>> from numcodecs import Zstd
    >>> values = np.arange(100_000, dtype=np.float32).view(np.uint8)
    >>> packed = compress(values, 0, False)
    >>> bool((np.frombuffer(Zstd().decode(packed), np.uint8) == values).all())
    True
    """
    library = zstd_library()
    assert library is not None
    context = _context("compressing", library)
    _set_frame_parameters(library, context, level, checksum)
    out = _results.get(library.compress_bound(data.nbytes))
    size = library.check(library.compress2(context, out.ctypes.data, out.nbytes,
                                           data.ctypes.data, data.nbytes))
    if size <= out.nbytes // 2:
        # (well compressed: a copy as small as the result, so that a store that keeps what
        # it is given keeps no more, and the kept array is free again at once)
        return out[:size].copy()
    return out[:size]


def decompress(data: np.ndarray) -> np.ndarray | None:
    """The bytes of the zstd frames ``data``, in a kept array (a view of it), or None when
    the frames do not tell their size (then numcodecs' streaming decoder is needed).

    Examples
    --------
    >>> values = np.arange(100_000, dtype=np.float32).view(np.uint8)
    >>> bool((decompress(compress(values, 3, True)) == values).all())
    True
    """
    library = zstd_library()
    assert library is not None
    if not data.nbytes:
        return None
    size = library.decompressed_size(data.ctypes.data, data.nbytes)
    if size in (_CONTENT_SIZE_UNKNOWN, _CONTENT_SIZE_ERROR):
        return None
    out = _results.get(size)
    got = library.check(library.decompress_dctx(_context("decompressing", library),
                                                out.ctypes.data, out.nbytes,
                                                data.ctypes.data, data.nbytes))
    if got != size:
        raise RuntimeError(f"zstd: {got} bytes decompressed where the frames tell {size}")
    return out


class FrameWriter:
    """One zstd frame of ``size`` bytes, compressed as its pieces come, as numcodecs'
    ``Zstd(level, checksum)`` compresses the whole at once, and handed to ``sink`` (a
    callable taking a bytes-like object) :data:`FRAME_PIECE` bytes at a time, or
    compressed straight into ``into``'s buffers (:class:`FrameBuffers`: a file's own,
    written around the page cache, :class:`upconv.direct_writes.DirectWriter`).

    For a chunk compressed as its rows are computed (:class:`upconv.zarr_arrays.
    StreamedChunks`): zstd reads each row while it is still in the CPU's cache, and
    neither the chunk nor its compressed bytes need a buffer of their own. libzstd's
    streaming functions (``ZSTD_compressStream2``), with the frame's size given first
    (``ZSTD_CCtx_setPledgedSrcSize``), choose the same parameters as its one-shot
    ``ZSTD_compress2``, and the frame (which tells its size) decompresses to the same
    bytes; it is often, not always, byte for byte the one-shot frame (the streaming
    compressor may pick other matches). Needs :func:`zstd_library`.

    Examples
    --------
    >>> from numcodecs import Zstd
    >>> values = np.arange(300_000, dtype=np.float32).view(np.uint8)
    >>> parts = []
    >>> frame = FrameWriter(values.nbytes, 0, False, lambda piece: parts.append(bytes(piece)))
    >>> frame.write([values[:1000], values[1000:]])
    >>> frame.finish()
    >>> Zstd().decode(b"".join(parts)) == values.tobytes()
    True
    """

    def __init__(self, size: int, level: int, checksum: bool,
                 sink: Callable[[memoryview], None] | None = None,
                 into: FrameBuffers | None = None) -> None:
        assert (sink is None) != (into is None)
        library = zstd_library()
        assert library is not None
        self.library, self.sink, self.into, self.size = library, sink, into, size
        self._context = _take_context(library)
        self.context = self._context.pointer
        library.check(library.reset(self.context, _RESET_SESSION))
        _set_frame_parameters(library, self.context, level, checksum)
        library.check(library.set_pledged_size(self.context, size))
        self.out = _frame_pieces.get(FRAME_PIECE) if into is None else None
        self._out = _OutBuffer(0, 0, 0)
        self._in = _InBuffer(0, 0, 0)
        self.taken = 0

    def write(self, pieces: list) -> None:
        """Compress the frame's next bytes (a list of bytes-like objects, each contiguous)."""
        for piece in pieces:
            view = np.frombuffer(piece, np.uint8)
            self._in.src, self._in.size, self._in.pos = view.ctypes.data, view.nbytes, 0
            while self._in.pos < self._in.size:
                self._compress(_CONTINUE)
            self.taken += view.nbytes

    def finish(self) -> None:
        """End the frame (all ``size`` bytes given) and hand on the rest of it."""
        assert self.taken == self.size, (self.taken, self.size)
        self._in.src, self._in.size, self._in.pos = 0, 0, 0
        while self._compress(_END):
            pass
        self.close()

    def _compress(self, mode: int) -> int:
        """One ``ZSTD_compressStream2`` call into the output's free space, handing on what
        it wrote when the space is full (or the frame ends); what is left to flush."""
        out = self._out
        if self.into is not None:
            space = self.into.space()
            out.dst, out.size, out.pos = space.ctypes.data, space.nbytes, 0
        elif out.size == 0:
            out.dst, out.size, out.pos = self.out.ctypes.data, self.out.nbytes, 0
        left = self.library.check(self.library.compress_stream2(
            self.context, ctypes.byref(out), ctypes.byref(self._in), mode))
        if self.into is not None:
            self.into.filled(out.pos)
        elif out.pos == out.size or mode == _END:
            if out.pos:
                self.sink(memoryview(self.out)[:out.pos])
            out.pos = 0
        return left

    def close(self) -> None:
        """Give the context and the buffer back (done by :meth:`finish`)."""
        if self._context is not None:
            _spare_contexts().append(self._context)
            self._context = None
            self.out = None  # (free again for another frame)


class FrameBuffers(Protocol):
    """Buffers a :class:`FrameWriter` compresses into (a file's own)."""

    def space(self) -> np.ndarray:
        """The free part of the current buffer: a uint8 array of at least one byte."""

    def filled(self, count: int) -> None:
        """The first ``count`` bytes of the space were written."""


#: :class:`FrameWriter` hands on this many bytes at a time.
FRAME_PIECE = 1 << 20
#: The frames' output buffers, kept for reuse.
_frame_pieces = ReusedArrays(most=8)


def _spare_contexts() -> list[_Context]:
    """This thread's compressing contexts that no frame is using (one thread may write
    several frames at once: a block's chunks side by side)."""
    spare = getattr(_contexts, "frames", None)
    if spare is None:
        spare = _contexts.frames = []
    return spare


def _take_context(library: _LibZstd) -> _Context:
    spare = _spare_contexts()
    return spare.pop() if spare else _Context(library.create_cctx, library.free_cctx)


@dataclasses.dataclass(frozen=True)
class ReusingZstdCodec(ZstdCodec):
    """zarr's ``ZstdCodec`` (same metadata and bytes) whose results go into kept arrays
    (the module says why); zarr's own where libzstd cannot be found.

    Examples
    --------
    >>> import zarr
    >>> array = zarr.create_array(store={}, shape=(300, 300), chunks=(100, 100), dtype="f4",
    ...                           compressors=[ReusingZstdCodec(level=3)])
    >>> array[...] = np.arange(90_000, dtype=np.float32).reshape(300, 300)
    >>> float(array[299, 299]), array.metadata.to_dict()["codecs"][1]["name"]
    (89999.0, 'zstd')
    """

    def __init__(self, *, level: int = 0, checksum: bool = False) -> None:
        super().__init__(level=level, checksum=checksum)

    def _encode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        if zstd_library() is None:
            return super()._encode_sync(chunk_bytes, chunk_spec)
        packed = compress(_bytes_of(chunk_bytes), self.level, self.checksum)
        return chunk_spec.prototype.buffer.from_array_like(packed)

    def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        values = decompress(_bytes_of(chunk_bytes)) if zstd_library() is not None else None
        if values is None:
            return super()._decode_sync(chunk_bytes, chunk_spec)
        return chunk_spec.prototype.buffer.from_array_like(values)


def reusing_codecs(array: Any) -> Any:
    """The zarr array ``array`` seen with :class:`ReusingZstdCodec` in place of zarr's
    ``ZstdCodec`` (Zarr format 3; the stored metadata is not changed); ``array`` itself
    when it has none (format 2, whose codecs are numcodecs' own, or no zstd)."""
    import zarr

    metadata = array.metadata
    if metadata.zarr_format != 3 or not any(type(codec) is ZstdCodec
                                            for codec in metadata.codecs):
        return array
    codecs = tuple(_reusing(codec) for codec in metadata.codecs)
    return zarr.Array(zarr.AsyncArray(metadata=dataclasses.replace(metadata, codecs=codecs),
                                      store_path=array.store_path,
                                      config=array.async_array.config))


def reusing_compressors(compressors: Any) -> Any:
    """``compressors`` (an array's, for one like it) with zarr's ``ZstdCodec`` replaced
    by :class:`ReusingZstdCodec`."""
    if not compressors:
        return compressors
    return tuple(_reusing(codec) for codec in compressors)


def _reusing(codec: Any) -> Any:
    """:class:`ReusingZstdCodec` in place of zarr's own ``ZstdCodec``; any other as it is."""
    if type(codec) is not ZstdCodec:
        return codec
    return ReusingZstdCodec(level=codec.level, checksum=codec.checksum)


def drop_codec_buffers() -> None:
    """Let go of the arrays kept for results and for frames' pieces, and of the calling
    thread's spare frame contexts (a job's last step, here and on each worker; another
    thread's go when it ends)."""
    _results.clear()
    _frame_pieces.clear()
    _spare_contexts().clear()
