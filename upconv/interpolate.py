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
from .polyphase import (
    AxisTaps,
    Phases,
    apply_general,
    apply_separable,
    band_of_periods,
    default_threads,
    gather,
    run_over_rows,
)
from .samples import to_float

__all__ = ["axis_taps", "axis_phases", "nearest", "nearest_band", "interpolate",
           "interpolate_band", "x_coefficients"]


#: scipy pre-pads this many samples before the spline prefilter in the
#: "nearest" and "grid-constant" modes; doing the same gives the same result.
SPLINE_PREPAD = 12


def axis_taps(n_in: int, n_out: int, method: InterpolationMethod, pad: int = 0,
              outputs: tuple[int, int] | None = None) -> AxisTaps:
    """The 1-D resampling operator of ``method`` from ``n_in`` to ``n_out`` samples (of
    only the outputs ``[start, stop)`` if ``outputs`` is given: the same taps as those
    rows of the whole operator, at a cost that does not grow with the axis).

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths.
    method : InterpolationMethod
        Its tap count and weights (for bicubic, applied to spline coefficients).
    pad : int
        Extension of the input on each side; added to the indices.
    outputs : (int, int), optional
        The outputs wanted (default: all).

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
    >>> axis_taps(2, 4, METHODS["bilinear"], pad=1, outputs=(1, 3)).index.tolist()
    [[1, 2], [1, 2]]
    """
    # The grid repeats every n_in / g inputs and n_out / g outputs (g their gcd): the taps
    # of an output's place in its period are shifted by whole inputs, so that the taps are
    # exactly periodic (a block of whole periods has the very taps of the whole axis).
    common = math.gcd(n_in, n_out)
    period_in, period_out = n_in // common, n_out // common
    ratio = n_in / n_out
    start, stop = (0, n_out) if outputs is None else outputs
    wanted = np.arange(start, stop)
    # Whole periods' taps (shifted, then cut to the outputs); or, for fewer outputs than a
    # period (a grid without a short one), only the taps of their own places.
    whole_periods = stop - start >= period_out
    places = np.arange(period_out) if whole_periods else wanted % period_out
    coords = (places + 0.5) * ratio - 0.5  # the half-pixel grid
    index = method.first_tap(coords)[:, None] + np.arange(method.taps)
    weights = method.tap_weights(coords[:, None] - index)
    if not whole_periods:
        return AxisTaps(index + (wanted // period_out * period_in)[:, None] + pad, weights)
    first, last = start // period_out, -(-stop // period_out)
    shifts = np.arange(first, last) * period_in
    cut = slice(start - first * period_out, stop - first * period_out)
    index = (index[None] + shifts[:, None, None]).reshape(-1, method.taps)[cut]
    return AxisTaps(index + pad, np.tile(weights, (last - first, 1))[cut])


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


def _prefilter(coeffs: np.ndarray) -> None:
    """Cubic B-spline prefilter along axis 0, in place (causal + anti-causal IIR).

    The recursion runs along axis 0, each step one vector operation on a
    whole contiguous row (along x, :func:`x_coefficients` filters by
    recursive doubling instead). The array must already be extended by
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


def doubling_lags(dtype: np.dtype) -> list[int]:
    """The lags of the recursive doubling along x for samples of ``dtype``: 1, 2, 4, ...
    until the terms left out weigh less than the type's round-off (``|pole|**n``
    below its epsilon / 100): 16 terms for float32, 32 for float64.

    Examples
    --------
    >>> doubling_lags(np.dtype(np.float32)), doubling_lags(np.dtype(np.float64))
    ([1, 2, 4, 8], [1, 2, 4, 8, 16])
    """
    lags, terms = [], 1
    while abs(_POLE) ** terms >= np.finfo(dtype).eps / 100:
        lags.append(terms)
        terms *= 2
    return lags


#: Rows filtered along x at a time: a block and its scratch rows stay in cache.
X_BLOCK_ROWS = 16


def _recursion_by_doubling(rows: np.ndarray, step: int, scratch: np.ndarray,
                           backwards: bool) -> None:
    """``c[i] = x[i] + pole * c[i - 1]`` (or ``c[i + 1]`` ``backwards``) along axis 1 of
    flat rows, in place, for samples ``step`` apart (a pixel's channels), started as
    after a constant extension of the row.

    Recursive doubling: after the lags 1, 2, ..., L (:func:`doubling_lags`)
    each sample holds ``sum_{k<2L} pole**k * x[i -/+ k]``, each lag one
    vectorised operation on whole rows, so that no Python step is taken per
    column.
    """
    edge = slice(-step, None) if backwards else slice(0, step)
    rows[:, edge] *= rows.dtype.type(1.0 / (1.0 - _POLE))  # the constant extension's sum
    for lag in doubling_lags(rows.dtype):
        shift = lag * step
        power = rows.dtype.type(_POLE ** lag)
        shifted = scratch[:, :rows.shape[1] - shift]
        if backwards:
            np.multiply(rows[:, shift:], power, out=shifted)
            rows[:, :-shift] += shifted
        else:
            np.multiply(rows[:, :-shift], power, out=shifted)
            rows[:, shift:] += shifted


def _spline_pad(boundary: Boundary) -> int:
    """How far :func:`_spline_coefficients` extends the image: :data:`SPLINE_PREPAD`, or 2
    for "reflect" (scipy's exact mirror start-up needs no prepad)."""
    return 2 if boundary is Boundary.REFLECT else SPLINE_PREPAD


def _spline_coefficients(image: np.ndarray, boundary: Boundary,
                         threads: int | None = None) -> np.ndarray:
    """Cubic B-spline coefficients of the image, extended by :func:`_spline_pad`.

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
        return _extend(coeffs, _spline_pad(boundary), boundary)
    return _y_coefficients(x_coefficients(image, boundary, threads), boundary)


def x_coefficients(rows: np.ndarray, boundary: Boundary,
                   threads: int | None = None) -> np.ndarray:
    """Rows of an image filtered into cubic B-spline coefficients along x, extended by
    :data:`SPLINE_PREPAD` columns each side: the first half of the prefilter.

    Each row is filtered on its own, so a big image's rows can be filtered in
    chunks as they are read (:mod:`upconv.pipeline`), and the windows of a
    banded job interpolated from them (``interpolate_band(..., x_filtered=True)``)
    without filtering their halo rows again. Edge and zero boundaries only
    (reflect uses scipy's exact mirror start-up). The causal and anti-causal
    recursions run by recursive doubling (:func:`_recursion_by_doubling`) on
    blocks of :data:`X_BLOCK_ROWS` rows, converted from their samples in
    place, on ``threads`` threads (default: every CPU).

    Examples
    --------
    >>> flat = x_coefficients(np.full((2, 3, 1), 51, np.uint8), Boundary.EDGE)
    >>> flat.shape, bool(np.allclose(flat, 0.2))
    ((2, 27, 1), True)
    """
    pad = SPLINE_PREPAD
    height, width, channels = rows.shape
    coeffs = np.empty((height, width + 2 * pad, channels), to_float(rows[:1, :1]).dtype)
    flat = coeffs.reshape(height, -1)
    # The anti-causal recursion is run on -pole * c (then c[i] = u[i] + pole * c[i + 1]),
    # and the prefilter's gain taken with it.
    anticausal_scale = coeffs.dtype.type(-_POLE * _GAIN)

    def make_worker() -> Callable[[tuple[int, int]], None]:
        scratch = np.empty((X_BLOCK_ROWS, flat.shape[1]), coeffs.dtype)

        def work(band: tuple[int, int]) -> None:
            a, b = band
            block = coeffs[a:b]
            to_float(rows[a:b], out=block[:, pad:pad + width])
            if boundary is Boundary.ZERO:
                block[:, :pad] = 0
                block[:, pad + width:] = 0
            else:  # edge: the first and last columns repeated
                block[:, :pad] = block[:, pad:pad + 1]
                block[:, pad + width:] = block[:, pad + width - 1:pad + width]
            _recursion_by_doubling(flat[a:b], channels, scratch[:b - a], backwards=False)
            flat[a:b] *= anticausal_scale
            _recursion_by_doubling(flat[a:b], channels, scratch[:b - a], backwards=True)

        return work

    run_over_rows(make_worker, height, X_BLOCK_ROWS,
                  default_threads() if threads is None else threads)
    return coeffs


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
    return nearest_band(lambda first, last: img3[first:last], img3.shape[:2], shape,
                        (0, shape[0]), threads)


def nearest_band(read_rows: Callable[[int, int], np.ndarray], size: tuple[int, int],
                 shape: tuple[int, int], band: tuple[int, int], threads: int,
                 columns: tuple[int, int] | None = None,
                 x_window: tuple[int, int] | None = None) -> np.ndarray:
    """Output rows ``band = (a, b)`` of :func:`nearest` from the input rows they copy
    (``read_rows(first, last)``; ``size`` the input's (H, W), ``shape`` the output's);
    of those rows only the output columns ``columns = (c, d)`` if given.

    ``x_window = (x0, x1)``: the rows read hold only the input's columns ``[x0, x1)``
    (a block of a bigger image; they must hold every column the band's outputs copy).

    Examples
    --------
    >>> image = np.arange(6).reshape(3, 2, 1)
    >>> nearest_band(lambda a, b: image[a:b], (3, 2), (6, 4), (3, 5), 1)[..., 0]
    array([[2, 2, 3, 3],
           [4, 4, 5, 5]])
    >>> nearest_band(lambda a, b: image[a:b, 1:], (3, 2), (6, 4), (3, 5), 1,
    ...              columns=(2, 4), x_window=(1, 2))[..., 0]
    array([[3, 3],
           [5, 5]])
    """
    rows = axis_taps(size[0], shape[0], METHODS["nearest"], outputs=band).index[:, 0]
    first = int(rows.min())
    window = read_rows(first, int(rows.max()) + 1)
    col_first, col_last = (0, shape[1]) if columns is None else columns
    x0 = 0 if x_window is None else x_window[0]
    cols = axis_taps(size[1], shape[1], METHODS["nearest"],
                     outputs=(col_first, col_last)).index[:, 0] - x0
    assert cols.min() >= 0 and cols.max() < window.shape[1], (cols.min(), cols.max(), x_window)
    return gather(window, rows - first, cols, threads)


def interpolate(img3: np.ndarray, shape: tuple[int, int], method: InterpolationMethod,
                boundary: Boundary, threads: int) -> np.ndarray:
    """Interpolation of a float (H, W, C) image to ``shape`` with ``method``'s weights:
    the whole image as one band of :func:`interpolate_band`.

    Examples
    --------
    >>> bilinear = METHODS["bilinear"]
    >>> interpolate(np.array([[[0.0], [1.0]]]), (1, 4), bilinear, Boundary.EDGE, 1)[..., 0]
    array([[0.  , 0.25, 0.75, 1.  ]])
    """
    return interpolate_band(lambda first, last: img3[first:last], img3.shape[:2], shape,
                            (0, shape[0]), method, boundary, threads)


def interpolate_band(read_rows: Callable[[int, int], np.ndarray], size: tuple[int, int],
                     shape: tuple[int, int], band: tuple[int, int],
                     method: InterpolationMethod, boundary: Boundary,
                     threads: int, x_filtered: bool = False,
                     out: np.ndarray | None = None, halo: int | None = None,
                     columns: tuple[int, int] | None = None,
                     x_window: tuple[int, int] | None = None) -> np.ndarray:
    """Output rows ``band = (a, b)`` of :func:`interpolate` at any factor, from only the
    input rows they need (and of those rows, only the output columns ``columns = (c, d)``
    if given: the others are not computed).

    ``x_window = (x0, x1)``: the rows read hold only the input's columns ``[x0, x1)``, a
    block of a bigger image with a halo on each side (at least the taps' reach, and for
    bicubic the spline's halo, where the block does not end at the image's edge: its
    ends are extended as the image's would be, which the outputs of ``columns`` never
    reach, or only through the prefilter's decaying start-up). Factors that are not
    whole numbers only (at whole numbers a block is resampled as an image of its own).

    With ``x_filtered`` the rows read are spline coefficients along x already
    (:func:`x_coefficients`; edge or zero boundary). ``out``, if given,
    receives the rows and is returned: float, or integer samples, rounded
    into as they are computed (:func:`~upconv.polyphase.apply_separable`).
    ``halo`` replaces the method's spline halo (more rows for float64 values).

    ``read_rows(first, last)`` returns input rows ``[first, last)`` as float;
    ``size`` is the input's (height, width) and ``shape`` the output's. The
    rows the band's taps reach are read (plus, for a spline method, a halo
    of :data:`~upconv.methods.SPLINE_HALO` rows in which the prefilter's
    start-up error decays below 1e-9), extended by the boundary rule where
    they pass the image's edge, and the band is computed from them with the
    whole image's taps: exactly the whole image's rows for finite supports,
    and to float32 round-off for bicubic. At whole-number factors the band's
    output periods run through the polyphase engine, as the whole image's
    do (:func:`interpolate`); other factors through the general one.

    Examples
    --------
    >>> image = np.arange(12.0).reshape(4, 3, 1)
    >>> whole = interpolate(image, (6, 5), METHODS["bilinear"], Boundary.EDGE, 1)
    >>> band = interpolate_band(lambda a, b: image[a:b], (4, 3), (6, 5), (2, 4),
    ...                         METHODS["bilinear"], Boundary.EDGE, 1)
    >>> bool((band == whole[2:4]).all())
    True
    >>> part = interpolate_band(lambda a, b: image[a:b], (4, 3), (6, 5), (2, 4),
    ...                         METHODS["bilinear"], Boundary.EDGE, 1, columns=(1, 4))
    >>> bool((part == whole[2:4, 1:4]).all())
    True
    """
    height, width = size
    out_h, out_w = shape
    wanted = band
    col_first, col_last = (0, out_w) if columns is None else columns
    periodic = out_h % height == 0 and out_w % width == 0
    assert x_window is None or not (periodic or x_filtered), (x_window, periodic, x_filtered)
    if periodic:  # computed in whole output periods (then cut to the band)
        period_y = out_h // height
        band = (band[0] // period_y * period_y, -(-band[1] // period_y) * period_y)
    first_row, last_row = band
    if method.prefilter:
        pad = _spline_pad(boundary)
    else:
        pad = method.pad
    taps_y = axis_taps(height, out_h, method, pad, outputs=(first_row, last_row))
    index, weights = taps_y.index, taps_y.weights
    lo, hi = int(index.min()), int(index.max()) + 1  # rows of the extended image
    if method.prefilter:
        halo = method.halo if halo is None else halo
        first = max(0, lo - pad - halo)
        window = read_rows(first, min(height, hi - pad + halo))
        ext = (_y_coefficients(window, boundary) if x_filtered
               else _spline_coefficients(window, boundary, threads))
        offset = first  # ext's row 0 is image row first - pad: extended row `first`
    else:
        ext = boundary.window(read_rows, height, lo - pad, hi - pad, (pad, pad))
        offset = lo
    # Columns in whole output periods too, from the first one's inputs on (ext's columns
    # left of them are never read).
    period_x = out_w // width if periodic else 1
    first_col = col_first // period_x * period_x
    last_col = -(-col_last // period_x) * period_x
    whole_periods = (last_row - first_row, last_col - first_col, ext.shape[2])
    # (computed straight into `out` where it is whole periods, and float values only of
    # the engine's own type, so that the values do not depend on where a band falls)
    straight = out is not None and out.shape == whole_periods and (
        out.dtype == ext.dtype or out.dtype.kind != "f")
    target = out if straight else np.empty(whole_periods, ext.dtype)
    if periodic:
        # Phase starts made relative to ext's first row, for the band's first period.
        phases_y = axis_phases(period_y, method, pad)
        phases_y = Phases(phases_y.start + first_row // period_y - offset, phases_y.weights)
        apply_separable(ext[:, first_col // period_x:], _as_dtype(phases_y, ext.dtype),
                        _as_dtype(axis_phases(period_x, method, pad), ext.dtype),
                        target, threads)
    else:
        taps_x = axis_taps(width, out_w, method, pad, outputs=(first_col, last_col))
        x0 = 0 if x_window is None else x_window[0]  # ext's column 0: input column x0 - pad
        index_x = taps_x.index - x0
        assert index_x.min() >= 0 and index_x.max() < ext.shape[1], (x_window, columns)
        apply_general(ext, AxisTaps(index - offset, weights.astype(ext.dtype)),
                      AxisTaps(index_x, taps_x.weights), target, threads)
    return band_of_periods(target, wanted[0] - first_row, wanted[1] - wanted[0],
                           (col_first - first_col, col_last - first_col), out)


def _as_dtype(phases: Phases, dtype: type) -> Phases:
    return Phases(phases.start, phases.weights.astype(dtype))
