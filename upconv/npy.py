"""``.npy`` arrays as images: one header reader, one rule for their values, row access.

An ``.npy`` image is ``H x W``, ``H x W x C`` or, with the layout ``chw``,
``C x H x W``; PyTorch's ``N x C x H x W`` is taken with N = 1. C is any
number (feature maps): in an array no channel means alpha, unlike image files'
2 and 4. :func:`array_to_hwc` and :func:`hwc_to_array` turn the layouts into
``H x W x C`` and back. uint8 and uint16 arrays are stored samples, as in
image files; floats are values nominally in [0, 1]; booleans and other
integer types must already hold values in [0, 1]. :func:`npy_samples` applies
that rule, so a whole array, a tile of it and a streamed band all get the same
values. :class:`NpyFile` reads rows through small memory maps and writes them
in place, so big arrays are never held whole; :func:`create_npy` makes a file
for them with its disk space reserved up front, and :func:`npy_header` is the
header a sequential writer (a pipe, standard output) sends first.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .errors import BadInputError, FileAccessError
from .fileio import discard, is_url, reserve_space, temporary_beside, write_at, write_error
from .samples import SAMPLE_DTYPES

__all__ = ["NPY_MAGIC", "NpyHeader", "read_npy_header", "check_npy_image", "npy_samples",
           "check_unit_range", "npy_header", "NpyFile", "create_npy", "LAYOUTS",
           "array_layout", "array_to_hwc", "hwc_to_array"]

#: The layouts an ``.npy`` image may have: ``hw`` (2-D), ``hwc``, ``chw``, ``nchw``
#: (``N x C x H x W`` with N = 1); ``--layout`` chooses between ``hwc`` and ``chw``.
LAYOUTS = ("hw", "hwc", "chw", "nchw")

NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` header says: shape, dtype, order and where the data start."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int


def read_npy_header(handle: BinaryIO, name: str, size: int | None = None) -> NpyHeader:
    """Read the header of an ``.npy`` stream positioned at its start.

    Raises a one-line :class:`~upconv.errors.BadInputError` for a corrupt
    header, and for a file whose data are not exactly as long as its header
    says (cut short, or with bytes after the array), so that a whole load and
    a streamed one refuse the same files. The file's length is ``size`` if
    given (``handle`` then holds only its first bytes), else ``handle``'s.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.zeros((2, 3), np.uint8))
    >>> _ = buffer.seek(0)
    >>> read_npy_header(buffer, "x.npy").shape
    (2, 3)
    """
    try:
        version = np.lib.format.read_magic(handle)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read(handle)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInputError(f"{name}: corrupt .npy file ({exc})") from None
    header = NpyHeader(tuple(shape), dtype, bool(fortran_order), handle.tell())
    if not dtype.hasobject:  # pickled objects have no size to check (and are refused)
        if size is None:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(header.offset)
        _check_data_size(header, size - header.offset, name)
    return header


def _check_data_size(header: NpyHeader, stored: int, name: str) -> None:
    """Refuse an ``.npy`` whose data are not as long as its shape and dtype make them."""
    expected = math.prod(header.shape) * header.dtype.itemsize
    if stored == expected:
        return
    shape = "x".join(str(side) for side in header.shape) or "scalar"
    what = f"its header says {shape} {header.dtype} ({expected} bytes of data)"
    if stored < expected:
        raise BadInputError(f"{name}: truncated .npy file: {what}, but it holds {stored}")
    raise BadInputError(f"{name}: corrupt .npy file: {what}, but {stored - expected} more "
                        "bytes follow")


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The header ``np.save`` writes for a C-ordered array of ``shape`` and ``dtype``.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.zeros((2, 3), np.float32))
    >>> buffer.getvalue().startswith(npy_header((2, 3), np.dtype(np.float32)))
    True
    """
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                 "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


def array_layout(shape: tuple[int, ...], name: str, layout: str | None = None) -> str:
    """The layout of an ``.npy`` image of ``shape``: 2-D is ``hw``, 4-D ``nchw`` (N = 1),
    3-D ``hwc`` unless ``layout`` (``"hwc"`` or ``"chw"``, from ``--layout``) says
    ``chw``.

    Examples
    --------
    >>> array_layout((4, 5, 3), "a.npy"), array_layout((3, 4, 5), "a.npy", "chw")
    ('hwc', 'chw')
    >>> array_layout((1, 16, 4, 5), "a.npy")
    'nchw'
    """
    if len(shape) == 2:
        return "hw"
    if len(shape) == 3:
        return "chw" if layout == "chw" else "hwc"
    if len(shape) == 4:
        if layout == "hwc":
            raise BadInputError(f"{name}: a 4-D array is N x C x H x W, not H x W x C; drop "
                                "--layout hwc")
        if shape[0] != 1:
            raise BadInputError(f"{name}: a batch of {shape[0]} images (N x C x H x W); "
                                "upconv takes one at a time (N = 1)")
        return "nchw"
    raise BadInputError(f"{name}: .npy image must be H x W, H x W x C, C x H x W (--layout chw) "
                        f"or 1 x C x H x W, got shape {shape}")


def _hwc_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    if layout == "hw":
        return shape[0], shape[1], 1
    if layout == "hwc":
        return shape[0], shape[1], shape[2]
    channels, height, width = shape[-3:]
    return height, width, channels


def array_to_hwc(array: np.ndarray, layout: str) -> np.ndarray:
    """An ``.npy`` array of ``layout`` as ``H x W x C`` (a view where it can be).

    Examples
    --------
    >>> array_to_hwc(np.zeros((1, 3, 4, 5)), "nchw").shape
    (4, 5, 3)
    """
    if layout == "hw":
        return array[:, :, None]
    if layout == "hwc":
        return array
    return np.moveaxis(array.reshape(array.shape[-3:]), 0, -1)


def hwc_to_array(values: np.ndarray, layout: str) -> np.ndarray:
    """``H x W x C`` values as an ``.npy`` array of ``layout`` (``hw`` keeps extra channels).

    Examples
    --------
    >>> hwc_to_array(np.zeros((4, 5, 3)), "nchw").shape
    (1, 3, 4, 5)
    >>> hwc_to_array(np.zeros((4, 5, 1)), "hw").shape
    (4, 5)
    """
    if layout == "hw":
        return values[:, :, 0] if values.shape[2] == 1 else values
    if layout == "hwc":
        return values
    planes = np.moveaxis(values, -1, 0)
    return planes[None] if layout == "nchw" else planes


def check_npy_image(header: NpyHeader, name: str, max_pixels: int | None = None,
                    layout: str | None = None) -> str:
    """Refuse arrays that are not images (wrong dtype, shape, empty, too many pixels);
    return their layout (:func:`array_layout`)."""
    shape, dtype = header.shape, header.dtype
    if dtype.hasobject or dtype.kind not in "fiub":
        raise BadInputError(f"{name}: .npy arrays must hold numbers, not {dtype}")
    found = array_layout(shape, name, layout)
    if 0 in shape:
        raise BadInputError(f"{name}: .npy image is empty (shape {shape})")
    height, width, _ = _hwc_shape(shape, found)
    if max_pixels is not None and height * width > max_pixels:
        raise BadInputError(f"{name}: image is {width}x{height} pixels, over the limit "
                            f"of {max_pixels} (--max-pixels)")
    return found


def npy_samples(array: np.ndarray, name: str) -> np.ndarray:
    """An ``.npy`` array (or rows of one) as image samples: uint8/uint16, or float.

    uint8 and uint16 stay as stored samples; floats stay float (float16 becomes
    float32) and must be finite; booleans and other integers must hold values
    in [0, 1] and become float64. Byte order is the machine's afterwards.

    Examples
    --------
    >>> npy_samples(np.array([[0, 1]], np.uint32), "a.npy")
    array([[0., 1.]])
    >>> npy_samples(np.array([[0, 7]], np.uint32), "a.npy")
    Traceback (most recent call last):
    ...
    upconv.errors.BadInputError: a.npy: integer .npy images must be uint8 or uint16 samples, \
or values in [0, 1]; got uint32 from 0 to 7
    """
    if not array.dtype.isnative:  # a big-endian file on a little-endian machine
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype in SAMPLE_DTYPES:
        return array
    if array.dtype.kind != "f":
        values = array.astype(np.float64)
        if values.size:
            check_unit_range(array.dtype, values.min(), values.max(), name)
        return values
    if array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise BadInputError(f"{name}: the image contains NaN or infinite values")
    return array


def check_unit_range(dtype: np.dtype, low: float, high: float, name: str) -> None:
    """Refuse integer values outside [0, 1] in an array that is not uint8/uint16 samples."""
    if low < 0 or high > 1:
        raise BadInputError(f"{name}: integer .npy images must be uint8 or uint16 samples, "
                            f"or values in [0, 1]; got {dtype} from {low:g} to {high:g}")


#: How many bytes are read of an object's start for its ``.npy`` header (a header longer
#: than this, rare, takes a second read).
_HEADER_READ = 4096


@dataclass(frozen=True)
class NpyFile:
    """An ``.npy`` file whose rows are read through small memory maps and written in place.

    Rows can be mapped only in a C-ordered file (``streamable``); a
    Fortran-ordered one is read whole instead. Rows are written with ordinary
    positioned writes, never through a map, so that a full disk is an error
    naming the file (``name``, the path the user gave), not a SIGBUS.

    ``path`` may also be an object's URL (:mod:`upconv.storage`), whose rows are
    read with ranged GETs, a band at a time (objects are written otherwise:
    :func:`upconv.storage.uploading_parts`).
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    fortran_order: bool = False
    #: the file as the user knows it, for messages ("" : ``path``)
    name: str = ""

    @classmethod
    def open(cls, path: str) -> NpyFile:
        """The file's header (checked against the file's size)."""
        if is_url(path):
            found = cls.from_object(path)
            if found is None:
                raise BadInputError(f"{path}: not an .npy file whose size the service gives")
            return found
        try:
            with open(path, "rb") as handle:
                header = read_npy_header(handle, path)
        except OSError as exc:
            raise FileAccessError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls(path, header.shape, header.dtype, header.offset, header.fortran_order)

    @classmethod
    def from_object(cls, url: str) -> NpyFile | None:
        """An object's header, read from its first bytes (its size asked first, unless a
        listing gave it); None when the object does not start as an ``.npy`` does, or when
        the service does not give its size (an HTTP server may not), which streaming
        needs."""
        from . import storage

        size = storage.object_size(url)
        if size is None:
            return None
        head = storage.read_range(url, 0, min(size, max(_HEADER_READ, 12)))
        if head[:len(NPY_MAGIC)] != NPY_MAGIC:
            return None
        if len(head) >= 12:  # a header longer than the first read: read it all
            length = (int.from_bytes(head[8:10], "little") + 10 if head[6] == 1 else
                      int.from_bytes(head[8:12], "little") + 12)
            if len(head) < length <= size:
                head = storage.read_range(url, 0, length)
        header = read_npy_header(io.BytesIO(head), url, size=size)
        return cls(url, header.shape, header.dtype, header.offset, header.fortran_order)

    @property
    def streamable(self) -> bool:
        """A C-ordered numeric image array: its rows can be mapped, and written in place."""
        return (not self.fortran_order and self.dtype.kind in "fiub"
                and len(self.shape) in (2, 3))

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def read_rows(self, first: int, last: int) -> np.ndarray:
        """Rows ``[first, last)`` as an in-memory array (the map is dropped at once; an
        object's rows are one ranged GET)."""
        if is_url(self.path):
            from .storage import read_range

            start = self.offset + first * self.row_bytes
            data = read_range(self.path, start, start + (last - first) * self.row_bytes)
            return np.frombuffer(data, self.dtype).reshape((last - first, *self.shape[1:]))
        view = np.memmap(self.path, self.dtype, "r", self.offset + first * self.row_bytes,
                         (last - first, *self.shape[1:]))
        rows = np.array(view)
        del view
        return rows

    def check_values(self, name: str, rows: int = 1024, finite: bool = False) -> None:
        """Apply :func:`npy_samples`'s rule to the whole file, band by band, before any work.

        Integer arrays other than uint8/uint16 are always checked (their values
        must lie in [0, 1]): the error then names the whole file's range, as a
        whole load does. With ``finite``, float arrays are checked for NaN and
        infinities too, for an output that cannot be taken back once written
        (a pipe, a device, standard output); otherwise a streamed band
        refuses them when it gets there.
        """
        ranged = (self.dtype.kind in "iub"
                  and self.dtype.newbyteorder("=") not in SAMPLE_DTYPES)
        if not ranged and not (finite and self.dtype.kind == "f"):
            return
        low, high = np.inf, -np.inf
        for first in range(0, self.shape[0], rows):
            band = self.read_rows(first, min(self.shape[0], first + rows))
            if ranged:
                low, high = min(low, float(band.min())), max(high, float(band.max()))
            else:
                npy_samples(band, name)
        if ranged:
            check_unit_range(self.dtype, low, high, name)

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        """Write rows starting at ``first`` (in place: the file already has its size); a band
        of 8 MiB or more is written behind (:func:`upconv.fileio.write_at`), the last of it
        left on its way to the disk while the next is computed."""
        data = memoryview(np.ascontiguousarray(rows, self.dtype)).cast("B")
        position = self.offset + first * self.row_bytes
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                write_at(fd, data, position, later=self.path)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(self.name or self.path, exc) from None


def create_npy(target: str, shape: tuple[int, ...], dtype: np.dtype,
               shown: str | None = None) -> NpyFile:
    """A full-size ``.npy`` file to fill by rows: a temporary beside ``target``.

    Its disk space is reserved at once (:func:`upconv.fileio.reserve_space`),
    so a disk too small for it is a one-line error naming ``shown`` (else
    ``target``) before any work, and no temporary file is left. Commit it with
    :func:`upconv.fileio.commit` when every row is written, or remove it with
    :func:`upconv.fileio.discard`.
    """
    name = shown or target
    handle = temporary_beside(target, shown)
    try:
        with handle:
            handle.write(npy_header(shape, dtype))
            offset = handle.tell()
            handle.flush()
            reserve_space(handle.fileno(), offset + math.prod(shape) * np.dtype(dtype).itemsize)
    except BaseException as exc:
        discard(handle.name)
        if isinstance(exc, OSError):
            raise write_error(name, exc) from None
        raise
    return NpyFile(handle.name, tuple(shape), np.dtype(dtype), offset, name=name)
