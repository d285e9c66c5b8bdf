"""Stored samples and the float values the numeric core works on: one conversion each way.

Images are stored as uint8 or uint16 samples (or floats); the numeric core
works on float values nominally in [0, 1]. :func:`to_float` and
:func:`from_float` are the only conversions between the two in upconv, so
that a file gives the same values whether it is processed whole, in tiles,
streamed, fitted on or measured.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLE_DTYPES", "unit_scale", "to_float", "from_float", "convert_samples",
           "store_as"]

#: The integer sample types of images: 8 and 16 bits.
SAMPLE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def unit_scale(dtype: np.dtype | type) -> float:
    """The factor that takes samples of ``dtype`` to values in [0, 1] (1 for floats).

    Examples
    --------
    >>> unit_scale(np.uint8) == 1 / 255, unit_scale(np.float32)
    (True, 1.0)
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    if dtype not in SAMPLE_DTYPES:
        raise TypeError(f"image samples are uint8, uint16 or float, not {dtype}")
    return 1.0 / float(np.iinfo(dtype).max)


def to_float(samples: np.ndarray, dtype: np.dtype | type | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
    """uint8/uint16 samples to float values in [0, 1]; float samples unchanged.

    Integer samples become ``dtype`` (default float32), computed in that type
    as ``sample * (1 / max)``; with ``out`` the values, computed the same way,
    are written there (whatever its type) without a temporary. Float samples
    are returned as they are (float16 becomes float32), or copied into ``out``. Any other dtype is a
    programming error: files are validated into these types when they are read.

    Examples
    --------
    >>> to_float(np.array([0, 255], np.uint8))
    array([0., 1.], dtype=float32)
    >>> to_float(np.array([0, 51], np.uint8), np.float64)
    array([0. , 0.2])
    >>> out = np.empty(2)
    >>> bool((to_float(np.array([0, 51], np.uint8), out=out) == to_float(
    ...     np.array([0, 51], np.uint8))).all())
    True
    """
    if samples.dtype.kind == "f":
        if out is not None:
            out[...] = samples
            return out
        return samples if samples.dtype.itemsize >= 4 else samples.astype(np.float32)
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    scale = dtype.type(unit_scale(samples.dtype))
    if out is not None:
        return np.multiply(samples, scale, out=out, dtype=dtype)
    return samples.astype(dtype) * scale


def from_float(values: np.ndarray, dtype: np.dtype | type,
               out: np.ndarray | None = None) -> np.ndarray:
    """Float values in [0, 1] to ``dtype`` samples: clipped and rounded to nearest.

    Float targets keep the values (no clipping). ``values`` may be modified.
    ``out`` (of ``dtype`` and ``values``' shape) receives the samples instead
    of a new array: a band written straight into the image it belongs to.

    Examples
    --------
    >>> from_float(np.array([-0.1, 0.5, 1.2], np.float32), np.uint8)
    array([  0, 128, 255], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        top = float(np.iinfo(dtype).max)
        if not values.flags.writeable or values.dtype.kind != "f":
            values = values.astype(np.float32)
        values *= top
        np.clip(values, 0.0, top, out=values)
        np.rint(values, out=values)
    if out is None:
        return values.astype(dtype, copy=dtype.kind != "f")
    np.copyto(out, values, casting="unsafe")
    return out


def convert_samples(samples: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Samples to another stored type: 8 <-> 16 bits exactly, floats rounded.

    Examples
    --------
    >>> convert_samples(np.array([0, 32896, 65535], np.uint16), np.uint8)
    array([  0, 128, 255], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    if samples.dtype == dtype:
        return samples
    if samples.dtype == np.uint16 and dtype == np.uint8:
        # exact rounding of v * 255 / 65535
        return ((samples.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if samples.dtype == np.uint8 and dtype == np.uint16:
        return samples.astype(np.uint16) * 257
    return from_float(np.array(to_float(samples), dtype=np.float32), dtype)


def store_as(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Float values or stored samples written into ``out`` as its type; ``out`` returned.

    Into a float ``out``, samples become values (:func:`to_float`) and values
    are copied; into integer samples, values are rounded (:func:`from_float`)
    and samples converted exactly (:func:`convert_samples`). ``values`` may
    be modified.

    Examples
    --------
    >>> store_as(np.array([0, 255], np.uint8), np.empty(2, np.float32))
    array([0., 1.], dtype=float32)
    >>> store_as(np.array([0.0, 0.5]), np.empty(2, np.uint8))
    array([  0, 128], dtype=uint8)
    """
    if out.dtype.kind == "f":
        return to_float(values, out.dtype, out=out)
    if values.dtype.kind == "f":
        return from_float(values, out.dtype, out=out)
    out[...] = convert_samples(values, out.dtype)
    return out
