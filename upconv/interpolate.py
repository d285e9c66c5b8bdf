"""Nearest, bilinear, bicubic and Lanczos upsampling on the half-pixel grid.

Output pixel ``i`` samples input coordinate ``(i + 0.5) * n_in / n_out - 0.5``:
the ``align_corners=False`` convention of Pillow, OpenCV and PyTorch. Nearest,
bilinear and bicubic equal ``scipy.ndimage.zoom(channel, (fy, fx), order=o,
grid_mode=True, mode=m)`` for each channel (orders 0, 1 and 3). "bicubic"
here means scipy's *cubic B-spline with prefilter* (an interpolating spline),
not the Keys cubic convolution that Pillow (a = -0.5) and OpenCV/PyTorch
(a = -0.75) call bicubic; it is sharper than either. "lanczos" is Pillow's
``LANCZOS`` (a = 3, weights normalised per output pixel), with the border
extended by the boundary rule where Pillow shortens the window. Each method's
weights, support and prefilter come from its entry in :mod:`upconv.methods`.

The public entry point is :func:`upconv.scale`. Instead of evaluating every
output pixel in 2-D, upconv applies a 1-D operator along each axis (the
splines are separable); at integer factors that operator is periodic and
runs through the polyphase engine in :mod:`upconv.polyphase`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .methods import METHODS, InterpolationMethod
from .options import Boundary
from .polyphase import AxisTaps, Phases, apply_general, apply_separable, gather
from .samples import to_float

__all__ = ["axis_taps", "axis_phases", "nearest", "interpolate", "interpolate_band",
           "x_coefficients"]


#: scipy pre-pads this many samples before the spline prefilter in the
#: "nearest" and "grid-constant" modes; doing the same gives the same result.
SPLINE_PREPAD = 12


def axis_taps(n_in: int, n_out: int, method: InterpolationMethod, pad: int = 0) -> AxisTaps:
    """The 1-D resampling operator of ``method`` from ``n_in`` to ``n_out`` samples.

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths.
    method : InterpolationMethod
        Its tap count and weights (for bicubic, applied to spline coefficients).
    pad : int
        Extension of the input on each side; added to the indices.

    Returns
    -------
    AxisTaps

    Examples
    --------
    >>> taps = axis_taps(2, 4, METHODS["bilinear"], pad=1)
    >>> taps.index.tolist()
    [[0, 1], [1, 2], [1, 2], [2, 3]]
    >>> taps.weights.tolist()
    [[0.25, 0.75], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]]
    """
    ratio = n_in / n_out
    coords = (np.arange(n_out) + 0.5) * ratio - 0.5  # the half-pixel grid
    index = method.first_tap(coords)[:, None] + np.arange(method.taps)
    weights = method.tap_weights(coords[:, None] - index)
    return AxisTaps(index + pad, weights)


def axis_phases(factor: int, method: InterpolationMethod, pad: int = 0) -> Phases:
    """The same operator as :func:`axis_taps` for an integer factor, as phases.

    Examples
    --------
    >>> ph = axis_phases(2, METHODS["bilinear"], pad=1)
    >>> ph.start.tolist(), ph.weights.tolist()
    ([0, 1], [[0.25, 0.75], [0.75, 0.25]])
    """
    taps = axis_taps(1, factor, method, pad)
    return Phases(taps.index[:, 0].copy(), taps.weights)


def _extend(image: np.ndarray, pad: int, boundary: Boundary) -> np.ndarray:
    return boundary.extend(image, (pad, pad), (pad, pad))


#: The pole of the cubic B-spline prefilter, and its gain.
_POLE = math.sqrt(3.0) - 2.0
_GAIN = 6.0


#: Along axis 1 the recursion takes one Python step per column, whatever the number of
#: rows; for rows longer than this with fewer samples than this per column (rows x
#: channels: a window of a big image's band with alpha or linear light, which are not
#: filtered ahead) scipy's filter in C is used instead, whose import (a quarter of a
#: second) is then small next to the job.
SHORT_ROWS = 384


def _prefilter(coeffs: np.ndarray) -> None:
    """Cubic B-spline prefilter along axis 0, in place (causal + anti-causal IIR).

    The recursion runs along axis 0, each step one vector operation on a
    whole contiguous row; along x the rows are filtered in a transposed copy
    (:func:`x_coefficients`), since strided steps down the columns would cost
    twice as much. It runs on one thread: the steps are too short to share
    the GIL profitably. The array must already be extended by
    :data:`SPLINE_PREPAD` samples: the start-up conditions assume a constant
    extension, and whatever error that leaves decays by ``|pole|**12 < 2e-7``
    before the first real sample. Written here rather than called from
    ``scipy.ndimage.spline_filter1d`` (which it matches to float32 round-off)
    because importing ``scipy.ndimage`` costs a quarter of a second, more
    than the whole of a typical ``upconv scale``.
    """
    c = coeffs
    z = coeffs.dtype.type(_POLE)
    step = np.empty_like(c[0])
    c[0] *= 1.0 / (1.0 - _POLE)
    for i in range(1, c.shape[0]):
        np.multiply(c[i - 1], z, out=step)
        c[i] += step
    c[-1] *= _POLE / (_POLE - 1.0)
    for i in range(c.shape[0] - 2, -1, -1):
        np.subtract(c[i + 1], c[i], out=c[i])
        c[i] *= z
    coeffs *= _GAIN


#: Columns per strip when transposing for the prefilter along axis 1.
TRANSPOSE_STRIP = 64


def _spline_coefficients(image: np.ndarray, boundary: Boundary) -> tuple[np.ndarray, int]:
    """Cubic B-spline coefficients of the image, extended by their pad: ``(coeffs, pad)``.

    For "edge" and "zero", scipy extends the image by :data:`SPLINE_PREPAD`
    samples before filtering, and so does upconv. For "reflect", scipy uses
    exact mirror start-up conditions (which on images of 4 pixels or fewer
    differ from an infinite mirror extension by up to 3e-4); upconv calls the
    same filter so the results agree.
    """
    if boundary is Boundary.REFLECT:
        from scipy import ndimage

        coeffs = image.copy()
        for axis in (0, 1):
            ndimage.spline_filter1d(coeffs, 3, axis=axis, mode="reflect", output=coeffs)
        return _extend(coeffs, 2, boundary), 2
    return _y_coefficients(x_coefficients(image, boundary), boundary), SPLINE_PREPAD


def x_coefficients(rows: np.ndarray, boundary: Boundary) -> np.ndarray:
    """Rows of an image filtered into cubic B-spline coefficients along x, extended by
    :data:`SPLINE_PREPAD` columns each side: the first half of the prefilter.

    Each row is filtered on its own, so a big image's rows can be filtered in
    chunks as they are read (:mod:`upconv.pipeline`), and the windows of a
    banded job interpolated from them (``interpolate(..., x_coefficients=True)``)
    without filtering their halo rows again. Edge and zero boundaries only
    (reflect uses scipy's exact mirror start-up).
    """
    if rows.shape[0] * rows.shape[2] < SHORT_ROWS and rows.shape[1] > SHORT_ROWS:
        # Few, long rows: W Python steps on short columns would dominate.
        from scipy import ndimage

        coeffs = boundary.extend(to_float(rows), (0, 0), (SPLINE_PREPAD, SPLINE_PREPAD))
        ndimage.spline_filter1d(coeffs, 3, axis=1, mode=boundary.scipy_mode, output=coeffs)
        return coeffs
    # Extended and filtered in the transposed layout the recursion runs in (contiguous
    # steps): one copy in, one copy out, strip by strip so that each stays in cache.
    turned = _turned_extension(rows, boundary)
    _prefilter(turned)
    coeffs = np.empty((rows.shape[0], turned.shape[0], rows.shape[2]), turned.dtype)
    for k in range(0, turned.shape[0], TRANSPOSE_STRIP):
        coeffs[:, k:k + TRANSPOSE_STRIP] = turned[k:k + TRANSPOSE_STRIP].swapaxes(0, 1)
    return coeffs


def _turned_extension(rows: np.ndarray, boundary: Boundary) -> np.ndarray:
    """``rows`` (n, W, C) as float, transposed to (W + 2 pad, n, C) and extended along
    the new axis 0 by :data:`SPLINE_PREPAD` by the boundary rule, in strips."""
    pad = SPLINE_PREPAD
    height, width = rows.shape[:2]
    dtype = to_float(rows[:1, :1]).dtype
    turned = np.empty((width + 2 * pad, height) + rows.shape[2:], dtype)
    for k in range(0, width, TRANSPOSE_STRIP):  # integer samples converted strip by strip
        stop = min(k + TRANSPOSE_STRIP, width)
        turned[pad + k:pad + stop] = to_float(rows[:, k:stop]).swapaxes(0, 1)
    if boundary is Boundary.ZERO:
        turned[:pad] = 0
        turned[pad + width:] = 0
    else:  # edge: the first and last columns repeated
        turned[:pad] = turned[pad]
        turned[pad + width:] = turned[pad + width - 1]
    return turned


def _y_coefficients(coeffs: np.ndarray, boundary: Boundary) -> np.ndarray:
    """The second half of the prefilter: extend by :data:`SPLINE_PREPAD` rows, filter along y."""
    coeffs = boundary.extend(coeffs, (SPLINE_PREPAD, SPLINE_PREPAD), (0, 0))
    _prefilter(coeffs)
    return coeffs


def nearest(img3: np.ndarray, shape: tuple[int, int], threads: int) -> np.ndarray:
    """Nearest-neighbour resampling of an (H, W, C) array of any dtype to ``shape``.

    Examples
    --------
    >>> nearest(np.arange(2).reshape(1, 2, 1), (2, 4), threads=1)[..., 0]
    array([[0, 0, 1, 1],
           [0, 0, 1, 1]])
    """
    rows = axis_taps(img3.shape[0], shape[0], METHODS["nearest"]).index[:, 0]
    cols = axis_taps(img3.shape[1], shape[1], METHODS["nearest"]).index[:, 0]
    return gather(img3, rows, cols, threads)


def interpolate(img3: np.ndarray, shape: tuple[int, int], method: InterpolationMethod,
                boundary: Boundary, threads: int, x_filtered: bool = False) -> np.ndarray:
    """Interpolation of a float (H, W, C) image to ``shape`` with ``method``'s weights.

    With ``x_filtered``, ``img3`` holds the rows already through
    :func:`x_coefficients` (a spline method, edge or zero boundary): only the
    filter along y remains to be done.

    Examples
    --------
    >>> bilinear = METHODS["bilinear"]
    >>> interpolate(np.array([[[0.0], [1.0]]]), (1, 4), bilinear, Boundary.EDGE, 1)[..., 0]
    array([[0.  , 0.25, 0.75, 1.  ]])
    """
    height, width = img3.shape[:2]
    if x_filtered:
        width -= 2 * SPLINE_PREPAD
    out_h, out_w = shape
    dtype = img3.dtype
    integer_factors = out_h % height == 0 and out_w % width == 0
    if x_filtered:
        ext, pad = _y_coefficients(img3, boundary), SPLINE_PREPAD
    elif method.prefilter:
        ext, pad = _spline_coefficients(img3, boundary)
    else:
        pad = method.pad
        ext = _extend(img3, pad, boundary)
    if integer_factors:
        phases_y = axis_phases(out_h // height, method, pad)
        phases_x = axis_phases(out_w // width, method, pad)
        out = np.empty((out_h, out_w, img3.shape[2]), dtype)
        return apply_separable(ext, _as_dtype(phases_y, dtype), _as_dtype(phases_x, dtype),
                               out, threads)
    out = np.empty((out_h, out_w, img3.shape[2]), dtype)
    return apply_general(ext, axis_taps(height, out_h, method, pad),
                         axis_taps(width, out_w, method, pad), out, threads)


def interpolate_band(read_rows: Callable[[int, int], np.ndarray], size: tuple[int, int],
                     shape: tuple[int, int], band: tuple[int, int],
                     method: InterpolationMethod, boundary: Boundary,
                     threads: int, x_filtered: bool = False) -> np.ndarray:
    """Output rows ``band = (a, b)`` of :func:`interpolate` at any factor, from only the
    input rows they need.

    With ``x_filtered`` the rows read are spline coefficients along x already
    (:func:`x_coefficients`; edge or zero boundary).

    ``read_rows(first, last)`` returns input rows ``[first, last)`` as float;
    ``size`` is the input's (height, width) and ``shape`` the output's. The
    rows the band's taps reach are read (plus, for a spline method, a halo
    of :data:`~upconv.methods.SPLINE_HALO` rows in which the prefilter's
    start-up error decays below 1e-9), extended by the boundary rule where
    they pass the image's edge, and the band is computed from them with the
    whole image's taps: exactly the whole image's rows for finite supports,
    and to float32 round-off for bicubic.

    Examples
    --------
    >>> image = np.arange(12.0).reshape(4, 3, 1)
    >>> whole = interpolate(image, (6, 5), METHODS["bilinear"], Boundary.EDGE, 1)
    >>> band = interpolate_band(lambda a, b: image[a:b], (4, 3), (6, 5), (2, 4),
    ...                         METHODS["bilinear"], Boundary.EDGE, 1)
    >>> bool((band == whole[2:4]).all())
    True
    """
    height, width = size
    out_h, out_w = shape
    first_row, last_row = band
    if method.prefilter:
        pad = 2 if boundary is Boundary.REFLECT else SPLINE_PREPAD
    else:
        pad = method.pad
    taps_y = axis_taps(height, out_h, method, pad)
    index, weights = taps_y.index[first_row:last_row], taps_y.weights[first_row:last_row]
    lo, hi = int(index.min()), int(index.max()) + 1  # rows of the extended image
    if method.prefilter:
        first = max(0, lo - pad - method.halo)
        window = read_rows(first, min(height, hi - pad + method.halo))
        ext = (_y_coefficients(window, boundary) if x_filtered
               else _spline_coefficients(window, boundary)[0])
        offset = first  # ext's row 0 is image row first - pad: extended row `first`
    else:
        first = max(0, lo - pad)
        window = read_rows(first, min(height, hi - pad))
        ext = boundary.extend(window, (max(0, pad - lo), max(0, hi - pad - height)),
                              (pad, pad))
        offset = lo
    out = np.empty((last_row - first_row, out_w, ext.shape[2]), ext.dtype)
    return apply_general(ext, AxisTaps(index - offset, weights.astype(ext.dtype)),
                         axis_taps(width, out_w, method, pad), out, threads)


def _as_dtype(phases: Phases, dtype: type) -> Phases:
    return Phases(phases.start, phases.weights.astype(dtype))
