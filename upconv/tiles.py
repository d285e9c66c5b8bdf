"""Bands of output rows: how many rows a band has, and when a job is banded at all.

Every method computes a band of output rows (full width) from only the input
rows its taps reach (:func:`upconv.scaling.resample_band`): equal to the same
rows of the whole image, exactly for finite supports and to float32 round-off
for bicubic, whose spline prefilter reads a halo of rows in which its
start-up error decays below 1e-9. :mod:`upconv.pipeline` reads those rows from
an image in memory or, for ``.npy`` files, through small memory maps
(:class:`upconv.npy.NpyFile`), so that neither array is held whole.
"""

from __future__ import annotations

__all__ = ["AUTO_TILE_PIXELS", "DEFAULT_TILE_ROWS", "tile_bands", "tile_rows_for"]

#: Outputs above this many pixels are streamed in bands automatically (64 megapixels).
AUTO_TILE_PIXELS = 2 ** 26
#: Output rows per band when streaming automatically.
DEFAULT_TILE_ROWS = 1024


def tile_bands(out_rows: int, stride: int, tile_rows: int) -> list[tuple[int, int]]:
    """Output row ranges of the bands: multiples of the stride, the last one shorter.

    Examples
    --------
    >>> tile_bands(10, 2, 5)
    [(0, 4), (4, 8), (8, 10)]
    """
    step = max(stride, tile_rows // stride * stride)
    return [(a, min(out_rows, a + step)) for a in range(0, out_rows, step)]


def tile_rows_for(tile: int | None, out_pixels: int) -> int | None:
    """Rows per band: as asked, automatic above :data:`AUTO_TILE_PIXELS`, else None.

    Examples
    --------
    >>> tile_rows_for(None, 100), tile_rows_for(None, 2 ** 27), tile_rows_for(64, 100)
    (None, 1024, 64)
    """
    if tile is not None:
        return tile
    return DEFAULT_TILE_ROWS if out_pixels > AUTO_TILE_PIXELS else None
