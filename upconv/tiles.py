"""Tiles of a transposed convolution or nearest-neighbour job, and ``.npy`` bands.

An output tile (a band of output rows, full width) needs only the input rows
it reads plus a *halo* for the kernel's support; the input window is
upsampled alone and the tile is cut out of the middle of its result. At the
image's own border the window's border is the image's, so the boundary rule
applies there as usual; the result equals the untiled one exactly (the
support is finite). Interpolation is banded without cutting anything away:
each band is computed from the input rows its taps reach
(:func:`upconv.interpolate.interpolate_band`).

The row reader and the upsampler are the caller's: :mod:`upconv.pipeline`
reads from a whole image in memory or, for ``.npy`` files, through small
memory maps (:class:`upconv.npy.NpyFile`), so that neither array is held whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .methods import InterpolationMethod

__all__ = ["AUTO_TILE_PIXELS", "DEFAULT_TILE_ROWS", "halo_for", "tile_bands", "tile",
           "tile_rows_for"]

#: Outputs above this many pixels are tiled automatically (64 megapixels).
AUTO_TILE_PIXELS = 2 ** 26
#: Output rows per tile when tiling automatically.
DEFAULT_TILE_ROWS = 1024


def halo_for(method: InterpolationMethod | None, kernel_rows: int | None, stride: int,
             post_rows: int = 0) -> int:
    """Input rows a tile needs beyond its own: for a method, or for a kernel's height.

    Examples
    --------
    >>> from upconv.methods import METHODS
    >>> halo_for(METHODS["bilinear"], None, 2), halo_for(None, 12, 2, post_rows=3)
    (3, 10)
    """
    if kernel_rows is not None:
        reach = math.ceil(kernel_rows / stride) + 1
    else:
        assert method is not None
        reach = method.halo
    return reach + math.ceil(post_rows / stride) + 1


def tile_bands(out_rows: int, stride: int, tile_rows: int) -> list[tuple[int, int]]:
    """Output row ranges of the tiles: multiples of the stride, the last one shorter."""
    step = max(stride, tile_rows // stride * stride)
    return [(a, min(out_rows, a + step)) for a in range(0, out_rows, step)]


def tile_rows_for(tile: int | None, out_pixels: int) -> int | None:
    """Rows per tile: as asked, automatic above :data:`AUTO_TILE_PIXELS`, else None."""
    if tile is not None:
        return tile
    return DEFAULT_TILE_ROWS if out_pixels > AUTO_TILE_PIXELS else None


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
