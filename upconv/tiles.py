"""Big images: upsampling in horizontal tiles, and streaming ``.npy`` arrays band by band.

An output tile (a band of output rows, full width) needs only the input rows
it reads plus a *halo* for the method's support; the input window is
upsampled alone and the tile is cut out of the middle of its result. At the
image's own border the window's border is the image's, so the boundary rule
applies there as usual. The result equals the untiled one exactly for
nearest, bilinear and the transposed convolution (their support is finite),
and to ~1e-9 for bicubic, whose spline prefilter has infinite support but
decays by 0.268 per pixel (the halo is 18 pixels).

For ``.npy`` input and output nothing whole is held in memory: input rows
are read through a memory map of just the window, and each band is written
through a memory map of just its rows of the output file (a temporary file
in the target folder, renamed when complete).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import UpconvError

__all__ = ["AUTO_TILE_PIXELS", "DEFAULT_TILE_ROWS", "NpyFile", "halo_for", "bands",
           "scale_in_tiles", "tile", "create_npy", "tile_rows_for"]

#: Outputs above this many pixels are tiled automatically (64 megapixels).
AUTO_TILE_PIXELS = 2 ** 26
#: Output rows per tile when tiling automatically.
DEFAULT_TILE_ROWS = 1024
#: Input pixels of halo for the cubic spline prefilter (0.268**16 < 1e-9).
SPLINE_HALO = 18


def halo_for(order: int | None, kernel_rows: int | None, stride: int,
             post_rows: int = 0) -> int:
    """Input rows a tile needs beyond its own, for a spline order or a kernel height."""
    if kernel_rows is not None:
        reach = math.ceil(kernel_rows / stride) + 1
    else:
        reach = {0: 1, 1: 2, 3: SPLINE_HALO}[order]
    return reach + math.ceil(post_rows / stride) + 1


def bands(out_rows: int, stride: int, tile_rows: int) -> list[tuple[int, int]]:
    """Output row ranges of the tiles: multiples of the stride, the last one shorter."""
    step = max(stride, tile_rows // stride * stride)
    return [(a, min(out_rows, a + step)) for a in range(0, out_rows, step)]


def tile_rows_for(tile: int | None, out_pixels: int) -> int | None:
    """Rows per tile: as asked, automatic above :data:`AUTO_TILE_PIXELS`, else None."""
    if tile is not None:
        return tile
    return DEFAULT_TILE_ROWS if out_pixels > AUTO_TILE_PIXELS else None


def scale_in_tiles(read_rows: Callable[[int, int], np.ndarray], height: int, stride: int,
                   upsample: Callable[[np.ndarray], np.ndarray], out_rows: int,
                   tile_rows: int, halo: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_output_row, tile)`` for every tile of the upsampled image.

    ``read_rows(a, b)`` returns input rows ``[a, b)``; ``upsample(window)``
    upsamples a window by ``stride`` (output ``stride`` times its rows).
    """
    for band in bands(out_rows, stride, tile_rows):
        yield band[0], tile(read_rows, height, stride, upsample, band, halo)


def tile(read_rows: Callable[[int, int], np.ndarray], height: int, stride: int,
         upsample: Callable[[np.ndarray], np.ndarray], band: tuple[int, int],
         halo: int) -> np.ndarray:
    """Output rows ``band = (start, stop)``: upsample their input window, cut them out."""
    start, stop = band
    first = max(0, start // stride - halo)
    last = min(height, -(-stop // stride) + halo)
    window = upsample(read_rows(first, last))
    offset = start - stride * first
    return window[offset:offset + (stop - start)]


@dataclass(frozen=True)
class NpyFile:
    """A C-ordered ``.npy`` file whose rows are read and written through small memory maps."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @classmethod
    def open(cls, path: str) -> NpyFile:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(handle)
            offset = handle.tell()
        if fortran or dtype.hasobject:
            raise UpconvError(f"{path}: streaming needs a C-ordered numeric .npy array")
        return cls(path, tuple(shape), dtype, offset)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read_rows(self, first: int, last: int) -> np.ndarray:
        """Rows ``[first, last)`` as an in-memory array (the map is dropped at once)."""
        view = np.memmap(self.path, self.dtype, "r", self.offset + first * self.row_bytes,
                         (last - first, *self.shape[1:]))
        rows = np.array(view)
        del view
        return rows

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        """Write rows starting at ``first`` through a map of just those rows, flushed."""
        view = np.memmap(self.path, self.dtype, "r+", self.offset + first * self.row_bytes,
                         rows.shape)
        view[...] = rows
        view.flush()
        del view


def create_npy(target: str, shape: tuple[int, ...], dtype: np.dtype) -> NpyFile:
    """A full-size ``.npy`` file to fill by rows: a temporary beside ``target``.

    Commit it with :func:`upconv.images.commit` when every row is written.
    """
    from .images import temporary_beside

    with temporary_beside(target) as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                  "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_2_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return NpyFile(handle.name, tuple(shape), np.dtype(dtype), offset)
