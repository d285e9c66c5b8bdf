"""Nearest, bilinear and bicubic upsampling with scipy.ndimage semantics.

The result equals ``scipy.ndimage.zoom(channel, (fy, fx), order=o,
grid_mode=True, mode=m)`` for each channel (orders 0, 1 and 3) on the
half-pixel grid: output pixel ``i`` samples input coordinate
``(i + 0.5) * n_in / n_out - 0.5``. This is the ``align_corners=False``
convention of Pillow, OpenCV and PyTorch. "bicubic" here means scipy's
*cubic B-spline with prefilter* (an interpolating spline), not the Keys
cubic convolution that Pillow (a = -0.5) and OpenCV/PyTorch (a = -0.75)
call bicubic; it is sharper than either.

Instead of evaluating every output pixel in 2-D, upconv applies a 1-D
operator along each axis (the splines are separable); at integer factors
that operator is periodic and runs through the polyphase engine in
:mod:`upconv.polyphase`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum

import numpy as np
from scipy import ndimage

from .colour import linear_to_srgb, premultiply, srgb_to_linear, unpremultiply
from .errors import UpconvError
from .polyphase import AxisTaps, Phases, apply_separable, default_threads, gather, resample_axis

__all__ = ["Method", "Boundary", "scale", "output_shape_for", "axis_taps", "axis_phases"]


class Method(str, Enum):
    """Resampling methods. ``transpose`` arrives with learned kernels."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"

    @property
    def order(self) -> int:
        """The scipy.ndimage spline order of the method."""
        return {"nearest": 0, "bilinear": 1, "bicubic": 3}[self.value]


class Boundary(str, Enum):
    """How the image is extended past its border."""

    EDGE = "edge"
    REFLECT = "reflect"
    ZERO = "zero"

    @property
    def scipy_mode(self) -> str:
        """The equivalent ``mode`` of scipy.ndimage on the grid_mode grid."""
        return {"edge": "nearest", "reflect": "reflect", "zero": "grid-constant"}[self.value]

    @property
    def numpy_pad_mode(self) -> str:
        """The equivalent ``mode`` of :func:`numpy.pad`."""
        return {"edge": "edge", "reflect": "symmetric", "zero": "constant"}[self.value]


#: No output side may be longer than this (2**31 - 1, beyond any image format).
MAX_SIDE = 2 ** 31 - 1

#: scipy pre-pads this many samples before the spline prefilter in the
#: "nearest" and "grid-constant" modes; doing the same gives the same result.
SPLINE_PREPAD = 12


def _choice(value: object, enum: type[Enum], what: str) -> Enum:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in enum)  # type: ignore[attr-defined]
        raise UpconvError(f"unknown {what} {value!r}; use one of {valid}") from None


def _cubic_bspline(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    inner = 2.0 / 3.0 - t * t + 0.5 * t ** 3
    outer = (2.0 - t) ** 3 / 6.0
    return np.where(t < 1.0, inner, np.where(t < 2.0, outer, 0.0))


def _spline_weights(offsets: np.ndarray, order: int) -> np.ndarray:
    if order == 0:
        return np.ones_like(offsets)
    if order == 1:
        return np.maximum(0.0, 1.0 - np.abs(offsets))
    return _cubic_bspline(offsets)


def _tap_start(coords: np.ndarray, order: int) -> np.ndarray:
    # As scipy: odd orders start at floor(c) - order//2, even at floor(c + 0.5).
    if order % 2:
        return np.floor(coords).astype(np.intp) - order // 2
    return np.floor(coords + 0.5).astype(np.intp) - order // 2


def axis_taps(n_in: int, n_out: int, order: int, pad: int = 0) -> AxisTaps:
    """The 1-D spline resampling operator from ``n_in`` to ``n_out`` samples.

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths.
    order : {0, 1, 3}
        Spline order.
    pad : int
        Extension of the input on each side; added to the indices.

    Returns
    -------
    AxisTaps

    Examples
    --------
    >>> taps = axis_taps(2, 4, order=1, pad=1)
    >>> taps.index.tolist()
    [[0, 1], [1, 2], [1, 2], [2, 3]]
    >>> taps.weights.tolist()
    [[0.25, 0.75], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]]
    """
    ratio = n_in / n_out
    coords = (np.arange(n_out) + 0.5) * ratio - 0.5  # the half-pixel grid
    start = _tap_start(coords, order)
    index = start[:, None] + np.arange(order + 1)
    weights = _spline_weights(coords[:, None] - index, order)
    return AxisTaps(index + pad, weights)


def axis_phases(factor: int, order: int, pad: int = 0) -> Phases:
    """The same operator as :func:`axis_taps` for an integer factor, as phases.

    Examples
    --------
    >>> ph = axis_phases(2, order=1, pad=1)
    >>> ph.start.tolist(), ph.weights.tolist()
    ([0, 1], [[0.25, 0.75], [0.75, 0.25]])
    """
    taps = axis_taps(1, factor, order, pad)
    return Phases(taps.index[:, 0].copy(), taps.weights)


def _positive_factor(value: float, axis: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UpconvError(f"factor {value!r} for {axis} is not a number") from None
    if not math.isfinite(f) or f <= 0:
        raise UpconvError(f"factor {value!r} for {axis} must be a positive finite number")
    return f


def output_shape_for(shape: tuple[int, int], factor: float | tuple[float, float] | None = None,
                     output_shape: tuple[int | None, int | None] | None = None,
                     ) -> tuple[int, int]:
    """The (height, width) that a factor or a (partial) target shape gives.

    Sizes follow ``scipy.ndimage.zoom``: ``round(n * factor)``. A target shape
    with one side ``None`` keeps the aspect ratio.

    Examples
    --------
    >>> output_shape_for((300, 451), 2)
    (600, 902)
    >>> output_shape_for((300, 451), (2, 1.5))
    (600, 676)
    >>> output_shape_for((1080, 1920), output_shape=(None, 960))
    (540, 960)
    """
    height, width = shape
    if (factor is None) == (output_shape is None):
        raise UpconvError("give exactly one of a factor and an output shape")
    if factor is not None:
        fy, fx = factor if isinstance(factor, tuple) else (factor, factor)
        fy, fx = _positive_factor(fy, "height"), _positive_factor(fx, "width")
        if max(height * fy, width * fx) > MAX_SIDE:
            raise UpconvError(f"factor {factor!r} would make a side longer than {MAX_SIDE} "
                              "pixels; that is not an image anyone can hold")
        new = (int(round(height * fy)), int(round(width * fx)))
    else:
        assert output_shape is not None
        new_h, new_w = output_shape
        if new_h is None and new_w is None:
            raise UpconvError("an output shape needs at least one side")
        for side in (new_h, new_w):
            if side is not None and (not isinstance(side, (int, np.integer)) or side < 1):
                raise UpconvError(f"output size {side!r} must be a positive whole number")
        if max(new_h or 0, new_w or 0) > MAX_SIDE:
            raise UpconvError(f"output size {new_w}x{new_h} has a side longer than "
                              f"{MAX_SIDE} pixels")
        if new_h is None:
            new_h = int(round(height * new_w / width))
        if new_w is None:
            new_w = int(round(width * new_h / height))
        new = (int(new_h), int(new_w))
    if min(new) < 1:
        raise UpconvError(f"the output would be {new[1]}x{new[0]} pixels; "
                          "a side of 0 is not an image")
    return new


def _extend(image: np.ndarray, pad: int, boundary: Boundary) -> np.ndarray:
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=boundary.numpy_pad_mode)


#: The pole of the cubic B-spline prefilter, and its gain.
_POLE = math.sqrt(3.0) - 2.0
_GAIN = 6.0


def _prefilter_columns(coeffs: np.ndarray) -> None:
    """Cubic B-spline prefilter along axis 0, in place (causal + anti-causal IIR).

    The recursion runs over rows, each step one vector operation on a whole
    row, which is cache friendly (scipy's line-buffer filter along axis 0 is
    not). It runs on one thread: the steps are too short to share the GIL
    profitably. The array must already be extended by :data:`SPLINE_PREPAD`
    rows: the start-up conditions assume a constant extension, and whatever
    error that leaves decays by ``|pole|**12 < 2e-7`` before the first real row.
    """
    c = coeffs.reshape(coeffs.shape[0], -1)
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
    c *= _GAIN


def _prefilter_rows(boundary: Boundary) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The cubic B-spline prefilter along axis 1, for one band of rows, into ``out``."""
    mode = boundary.scipy_mode

    def run(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        ndimage.spline_filter1d(rows, 3, axis=1, mode=mode, output=out)
        return out

    return run


RowFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _spline_coefficients(image: np.ndarray, boundary: Boundary, defer_rows: bool = False,
                         ) -> tuple[np.ndarray, int, RowFilter | None]:
    """Cubic B-spline coefficients of the image, extended by their pad.

    Returns ``(coeffs, pad, row_filter)``. With ``defer_rows=True`` the
    filter along axis 1 may be returned as ``row_filter`` instead of applied,
    so that the polyphase engine can run it band by band while the rows are
    in cache.

    For "edge" and "zero", scipy extends the image by :data:`SPLINE_PREPAD`
    samples before filtering, and so does upconv. For "reflect", scipy uses
    exact mirror start-up conditions (which on images of 4 pixels or fewer
    differ from an infinite mirror extension by up to 3e-4); upconv calls the
    same filter so the results agree.
    """
    if boundary is Boundary.REFLECT:
        coeffs = image.copy()
        for axis in (0, 1):
            ndimage.spline_filter1d(coeffs, 3, axis=axis, mode="reflect", output=coeffs)
        return _extend(coeffs, 2, boundary), 2, None
    coeffs = _extend(image, SPLINE_PREPAD, boundary)
    _prefilter_columns(coeffs)
    row_filter = _prefilter_rows(boundary)
    if defer_rows:
        return coeffs, SPLINE_PREPAD, row_filter
    return row_filter(coeffs, coeffs), SPLINE_PREPAD, None


def scale(image: np.ndarray, factor: float | tuple[float, float] | None = None,
          method: Method | str = "bicubic", boundary: Boundary | str = "edge", *,
          output_shape: tuple[int | None, int | None] | None = None,
          alpha: bool = False, linear_light: bool = False,
          threads: int | None = None) -> np.ndarray:
    """Upsample an image by nearest, bilinear or bicubic (B-spline) interpolation.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Float samples (values nominally in [0, 1]). Integer arrays are
        accepted by ``method="nearest"`` only, which keeps their dtype.
    factor : float or (float, float), optional
        Scale factor, or ``(factor_y, factor_x)``. The output has
        ``round(n * factor)`` samples along each axis, as in scipy.
    method : {"nearest", "bilinear", "bicubic"}
        scipy.ndimage spline order 0, 1 or 3 (with prefilter).
    boundary : {"edge", "reflect", "zero"}
        Extension past the border: scipy modes ``nearest``, ``reflect``,
        ``grid-constant``.
    output_shape : (int or None, int or None), optional
        ``(height, width)`` instead of ``factor``; a ``None`` side keeps the
        aspect ratio.
    alpha : bool
        The last channel is alpha: resample premultiplied, then divide back
        out, so transparent pixels do not bleed dark fringes.
    linear_light : bool
        Treat colour channels as sRGB-encoded and resample in linear light.
        Neither option changes nearest-neighbour results.
    threads : int, optional
        Worker threads (default: the CPUs available).

    Returns
    -------
    ndarray, shape (H', W') or (H', W', C)
        float32 for float32 (or smaller) input, float64 for float64 input;
        not clipped, so bicubic may overshoot [0, 1] slightly at edges.

    Examples
    --------
    >>> img = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> scale(img, 2, method="nearest")
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]])
    >>> scale(np.zeros((3, 4, 3), np.float32), output_shape=(None, 8)).shape
    (6, 8, 3)
    """
    method = _choice(method, Method, "method")
    boundary = _choice(boundary, Boundary, "boundary")
    threads = default_threads() if threads is None else max(1, int(threads))
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise UpconvError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    planar = image.ndim == 2
    img3 = image[:, :, None] if planar else image
    height, width = img3.shape[:2]
    out_h, out_w = output_shape_for((height, width), factor, output_shape)

    if method is Method.NEAREST:
        rows = axis_taps(height, out_h, 0).index[:, 0]
        cols = axis_taps(width, out_w, 0).index[:, 0]
        result = gather(img3, rows, cols, threads)
        return result[:, :, 0] if planar else result

    if not np.issubdtype(img3.dtype, np.floating):
        raise UpconvError(f"{method.value} needs a float image (values in [0, 1]), "
                          f"got {img3.dtype}; convert with image / max_value")
    dtype = np.float64 if img3.dtype == np.float64 else np.float32
    img3 = img3.astype(dtype, copy=False)
    colour = slice(0, img3.shape[2] - 1) if alpha else slice(None)
    if alpha and img3.shape[2] < 2:
        raise UpconvError("alpha=True needs an image with at least two channels")
    if linear_light:
        img3 = img3.copy()
        img3[..., colour] = srgb_to_linear(img3[..., colour])
    if alpha:
        img3 = premultiply(img3)
    out = _interpolate(img3, (out_h, out_w), method.order, boundary, threads)
    if alpha:
        unpremultiply(out)
    if linear_light:
        out[..., colour] = linear_to_srgb(out[..., colour])
    return out[:, :, 0] if planar else out


def _interpolate(img3: np.ndarray, shape: tuple[int, int], order: int, boundary: Boundary,
                 threads: int) -> np.ndarray:
    """Spline interpolation of a float (H, W, C) image to ``shape``."""
    height, width = img3.shape[:2]
    out_h, out_w = shape
    dtype = img3.dtype
    integer_factors = out_h % height == 0 and out_w % width == 0
    row_filter = None
    if order == 3:
        ext, pad, row_filter = _spline_coefficients(img3, boundary,
                                                    defer_rows=integer_factors)
    else:
        pad = 1
        ext = _extend(img3, pad, boundary)
    if integer_factors:
        phases_y = axis_phases(out_h // height, order, pad)
        phases_x = axis_phases(out_w // width, order, pad)
        out = np.empty((out_h, out_w, img3.shape[2]), dtype)
        return apply_separable(ext, pad, _as_dtype(phases_y, dtype), _as_dtype(phases_x, dtype),
                               out, threads, row_filter)
    mid = resample_axis(ext, axis_taps(width, out_w, order, pad), axis=1)
    return resample_axis(mid, axis_taps(height, out_h, order, pad), axis=0)


def _as_dtype(phases: Phases, dtype: type) -> Phases:
    return Phases(phases.start, phases.weights.astype(dtype))
