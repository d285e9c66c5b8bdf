"""``upconv.scale``: the one entry point for every method, with the colour handling.

The numeric work lives in :mod:`upconv.interpolate` (interpolation) and
:mod:`upconv.transpose` (transposed convolution). This module settles, once
per image, everything a resampling needs (:func:`plan_resampling`: the
output size, the kernel ready for the image's channels, the boundary, the
alpha decision) into a :class:`Resampling`, and :func:`resample` runs it on
the image or on a tile's window of it, wrapped in the linear-light and
premultiplied-alpha conversions when asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colour import linear_to_srgb, premultiply, srgb_to_linear, unpremultiply
from .errors import BadInputError
from .interpolate import interpolate_band, nearest_band
from .kernel_files import default_kernel, post_weights, resolve_kernel
from .kernels import Kernel
from .methods import Method
from .options import MAX_SIDE, Boundary, choice
from .polyphase import default_threads
from .samples import store_as
from .transpose import (
    TransposeGeometry,
    output_geometry,
    post_convolve,
    post_kernel_weights,
    transpose_band,
)

__all__ = ["scale", "output_shape_for", "FITS", "stride_from_factor", "Resampling",
           "plan_resampling", "resample"]


def _positive_factor(value: float, axis: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"factor {value!r} for {axis} is not a number") from None
    if not math.isfinite(f) or f <= 0:
        raise BadInputError(f"factor {value!r} for {axis} must be a positive finite number")
    return f


#: How a target of both sides is met: exactly (``fill``), or keeping the aspect ratio
#: inside it (``inside``, ImageMagick's ``-resize WxH``) or covering it (``cover``, ``WxH^``).
FITS = ("fill", "inside", "cover")


def output_shape_for(shape: tuple[int, int], factor: float | tuple[float, float] | None = None,
                     output_shape: tuple[int | None, int | None] | None = None,
                     fit: str = "fill") -> tuple[int, int]:
    """The (height, width) that a factor or a (partial) target shape gives.

    Sizes follow ``scipy.ndimage.zoom``: ``round(n * factor)``. A target shape
    with one side ``None`` keeps the aspect ratio; with both sides, ``fit``
    says how it is met: ``"fill"`` exactly (the aspect ratio may change),
    ``"inside"`` the largest size with the input's aspect ratio that fits in
    it, ``"cover"`` the smallest that covers it.

    Examples
    --------
    >>> output_shape_for((512, 512), output_shape=(1080, 1920), fit="inside")
    (1080, 1080)
    >>> output_shape_for((512, 512), output_shape=(1080, 1920), fit="cover")
    (1920, 1920)
    >>> output_shape_for((300, 451), 2)
    (600, 902)
    >>> output_shape_for((300, 451), (2, 1.5))
    (600, 676)
    >>> output_shape_for((1080, 1920), output_shape=(None, 960))
    (540, 960)
    """
    height, width = shape
    if (factor is None) == (output_shape is None):
        raise BadInputError("give exactly one of a factor and an output shape")
    if factor is not None:
        fy, fx = factor if isinstance(factor, tuple) else (factor, factor)
        fy, fx = _positive_factor(fy, "height"), _positive_factor(fx, "width")
        if max(height * fy, width * fx) > MAX_SIDE:
            raise BadInputError(f"factor {factor!r} would make a side longer than {MAX_SIDE} "
                              "pixels; that is not an image anyone can hold")
        new = (int(round(height * fy)), int(round(width * fx)))
    else:
        assert output_shape is not None
        new_h, new_w = output_shape
        if new_h is None and new_w is None:
            raise BadInputError("an output shape needs at least one side")
        for side in (new_h, new_w):
            if side is not None and (not isinstance(side, (int, np.integer)) or side < 1):
                raise BadInputError(f"output size {side!r} must be a positive whole number")
        if max(new_h or 0, new_w or 0) > MAX_SIDE:
            raise BadInputError(f"output size {new_w}x{new_h} has a side longer than "
                              f"{MAX_SIDE} pixels")
        if fit not in FITS:
            raise BadInputError(f"unknown fit {fit!r}; use one of {', '.join(FITS)}")
        if new_h is not None and new_w is not None and fit != "fill":
            by_width = new_w / width <= new_h / height  # the width binds, inside
            if by_width == (fit == "inside"):
                new_h = None
            else:
                new_w = None
        if new_h is None:
            new_h = int(round(height * new_w / width))
        if new_w is None:
            new_w = int(round(width * new_h / height))
        new = (int(new_h), int(new_w))
    if min(new) < 1:
        raise BadInputError(f"the output would be {new[1]}x{new[0]} pixels; "
                          "a side of 0 is not an image")
    return new


def scale(image: np.ndarray, factor: float | tuple[float, float] | None = None,
          method: Method | str = "bicubic", boundary: Boundary | str | None = None, *,
          output_shape: tuple[int | None, int | None] | None = None,
          kernel: Kernel | str | Path | None = None,
          padding: int | tuple[int, int] | None = None,
          output_padding: int | tuple[int, int] | None = None,
          post_kernel: np.ndarray | str | Path | None = None,
          alpha: bool = False, linear_light: bool = False,
          threads: int | None = None, fit: str = "fill") -> np.ndarray:
    """Upsample an image by interpolation or by a transposed convolution.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Float samples (values nominally in [0, 1]). Integer arrays are
        accepted by ``method="nearest"`` only, which keeps their dtype.
    factor : float or (float, float), optional
        Scale factor, or ``(factor_y, factor_x)``. The output has
        ``round(n * factor)`` samples along each axis, as in scipy. For
        ``"transpose"`` the integer stride; optional when the kernel states it.
    method : {"nearest", "bilinear", "bicubic", "lanczos", "transpose"}
        scipy.ndimage spline order 0, 1 or 3 (with prefilter), Pillow's
        Lanczos (a = 3), or a transposed convolution with ``kernel``.
    boundary : {"edge", "reflect", "zero"}, optional
        Extension past the border: scipy modes ``nearest``, ``reflect``,
        ``grid-constant``. Use ``"zero"`` with ``padding`` for PyTorch.
        Default: "zero" in PyTorch's geometry (a padding, given or in the
        kernel), else the boundary a fitted kernel was fitted with, else "edge".
    output_shape : (int or None, int or None), optional
        ``(height, width)`` instead of ``factor``; a ``None`` side keeps the
        aspect ratio. Not for ``"transpose"``, whose output is ``s`` times
        the input.
    kernel : Kernel, str or path, optional
        For ``"transpose"``: a :class:`~upconv.kernels.Kernel`, a kernel file,
        or a built-in name (``"nearest"``, ``"bilinear"``, ``"bicubic"``,
        ``"lanczos3"``); default: the fitted default for factors 2, 3 and 4,
        else ``"bilinear"``.
    padding, output_padding : int or (int, int), optional
        For ``"transpose"``: PyTorch's ``ConvTranspose2d`` geometry instead of
        the centred one (see :mod:`upconv.transpose`).
    post_kernel : array, str or path, optional
        For ``"transpose"``: an ordinary stride-1 convolution applied after
        (``"binomial3"`` built in), the remedy for checkerboards that Odena,
        Dumoulin and Olah discuss in "Deconvolution and Checkerboard Artifacts".
    alpha : bool
        The last channel is alpha: resample premultiplied, then divide back
        out, so transparent pixels do not bleed dark fringes.
    linear_light : bool
        Treat colour channels as sRGB-encoded and resample in linear light.
        Neither option changes nearest-neighbour results.
    threads : int, optional
        Worker threads (default: the CPUs available).
    fit : {"fill", "inside", "cover"}
        How an ``output_shape`` with both sides is met: exactly, or keeping the
        aspect ratio inside or covering it (see :func:`output_shape_for`).

    Returns
    -------
    ndarray, shape (H', W') or (H', W', C')
        float32 for float32 (or smaller) input, float64 for float64 input;
        not clipped, so bicubic may overshoot [0, 1] slightly at edges.
        ``C'`` is ``C`` except for channel-mixing kernels (their ``C_out``).

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
    >>> scale(img, 2, method="transpose", kernel="bilinear").shape
    (4, 4)
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise BadInputError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    was_2d = image.ndim == 2
    img3 = image[:, :, None] if was_2d else image
    plan = plan_resampling(img3.shape, factor, method, boundary, output_shape=output_shape,
                           kernel=kernel, padding=padding, output_padding=output_padding,
                           post_kernel=post_kernel, alpha=alpha, linear_light=linear_light,
                           threads=threads, fit=fit)
    if plan.method is not Method.NEAREST:
        if not np.issubdtype(img3.dtype, np.floating):
            raise BadInputError(f"{plan.method.value} needs a float image (values in [0, 1]), "
                                f"got {img3.dtype}; convert with image / max_value")
        img3 = img3.astype(np.float64 if img3.dtype == np.float64 else np.float32,
                           copy=False)
    out = resample(img3, plan)
    return out[:, :, 0] if was_2d and out.shape[2] == 1 else out


@dataclass(frozen=True)
class Resampling:
    """Everything about resampling one image, settled once: see :func:`plan_resampling`.

    Attributes
    ----------
    method : Method
    input_shape : (int, int)
        The (height, width) of the image planned for.
    shape : (int, int)
        The output's (height, width).
    channels : int
        The output's channels (a channel-mixing kernel's ``C_out``).
    boundary : Boundary
    kernel : Kernel or None
        For ``transpose``: stride settled, fitted to the image's channels.
    geometry : TransposeGeometry or None
        For ``transpose``: the output size and padding.
    post : ndarray or str or None
        The post-kernel's weights (or built-in name), loaded once.
    alpha : bool
        Resample premultiplied by the last channel.
    linear_light : bool
    threads : int
    period : int or None
        The whole-number factor when there is one (>= 2, the same on both
        axes; a transposed convolution's stride in either geometry): the
        period of any checkerboard pattern, and the stride of tiles.
    spline_halo : int or None
        Rows of context a band of a spline method reads on each side (None:
        :data:`~upconv.methods.SPLINE_HALO`, enough for float32).
    identity : bool
        Interpolation with factors of exactly 1 (or an output shape equal to
        the input's): the samples are kept as they are, as
        ``scipy.ndimage.zoom`` returns its input for a zoom of 1. (A factor
        such as 1.1 that rounds to the same size is interpolated, as in scipy.)
    """

    method: Method
    input_shape: tuple[int, int]
    shape: tuple[int, int]
    channels: int
    boundary: Boundary
    kernel: Kernel | None = None
    geometry: TransposeGeometry | None = None
    post: np.ndarray | str | None = None
    alpha: bool = False
    linear_light: bool = False
    threads: int = 1
    period: int | None = None
    identity: bool = False
    spline_halo: int | None = None

    @property
    def row_period(self) -> int:
        """Output rows per period along y: the factor when the output has a whole number of
        input heights (bands of whole periods are rounded inside the engine), else 1."""
        height, out_h = self.input_shape[0], self.shape[0]
        return out_h // height if out_h % height == 0 else 1

    @property
    def name(self) -> str:
        """The method and, for transpose, the kernel: ``"transpose (default x2)"``."""
        return self.method.value + (f" ({self.kernel.name})" if self.kernel is not None else "")


def plan_resampling(shape: tuple[int, ...], factor: float | tuple[float, float] | None = None,
                    method: Method | str = "bicubic", boundary: Boundary | str | None = None,
                    *, output_shape: tuple[int | None, int | None] | None = None,
                    kernel: Kernel | str | Path | None = None,
                    padding: int | tuple[int, int] | None = None,
                    output_padding: int | tuple[int, int] | None = None,
                    post_kernel: np.ndarray | str | Path | None = None,
                    alpha: bool = False, linear_light: bool = False,
                    threads: int | None = None, fit: str = "fill") -> Resampling:
    """Settle how an image of ``shape`` (H, W, C) is resampled; the options are :func:`scale`'s.

    The kernel is resolved and fitted to the channels, the output size and the
    boundary are decided, and the post-kernel is loaded: once, before any
    pixel is computed, so that a bad option fails early and a tiled job does
    not settle them again for every tile.

    Examples
    --------
    >>> plan = plan_resampling((300, 451, 3), 2, "transpose", kernel="bilinear")
    >>> plan.shape, plan.period, plan.boundary.value, plan.name
    ((600, 902), 2, 'edge', 'transpose (bilinear)')
    """
    method = choice(method, Method, "method")
    threads = default_threads() if threads is None else max(1, int(threads))
    height, width = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    if alpha and channels < 2:
        raise BadInputError("alpha=True needs an image with at least two channels")
    if method is not Method.TRANSPOSE:
        for name, value in (("kernel", kernel), ("padding", padding),
                            ("post_kernel", post_kernel)):
            if value is not None:
                raise BadInputError(f"{name} is for method='transpose' only")
        out_shape = output_shape_for((height, width), factor, output_shape, fit)
        boundary = choice(boundary if boundary is not None else Boundary.EDGE, Boundary,
                          "boundary")
        if factor is not None:
            fy, fx = factor if isinstance(factor, tuple) else (factor, factor)
            identity = float(fy) == 1.0 and float(fx) == 1.0
        else:
            identity = out_shape == (height, width)
        return Resampling(method, (height, width), out_shape, channels, boundary, alpha=alpha,
                          linear_light=linear_light, threads=threads,
                          period=whole_factor((height, width), out_shape), identity=identity)
    if output_shape is not None:
        raise BadInputError("a transposed convolution scales by its stride; give a factor, "
                            "not an output shape")
    stride = stride_from_factor(factor)
    resolved = resolve_kernel(kernel if kernel is not None else default_kernel(stride), stride)
    alpha = alpha and not resolved.mixes_channels
    resolved = resolved.for_image(channels, alpha)
    resolved.check_covers_stride()
    resolved.check_bias(channels)
    geometry = output_geometry(resolved, (height, width), padding, output_padding)
    if boundary is None:  # PyTorch's geometry pads with zeros; fitted kernels know theirs
        boundary = Boundary.ZERO if not geometry.centred else (
            resolved.info.get("boundary") or Boundary.EDGE)
    boundary = choice(boundary, Boundary, "boundary")
    post = post_weights(post_kernel) if post_kernel is not None else None
    return Resampling(method, (height, width), geometry.shape,
                      resolved.output_channels(channels), boundary,
                      resolved, geometry, post, alpha, linear_light, threads,
                      period=resolved.stride)


def resample(img3: np.ndarray, plan: Resampling) -> np.ndarray:
    """Run a :class:`Resampling` on a whole (H, W, C) image: float, or any dtype for
    nearest. The whole output is one band of :func:`resample_band`."""
    return resample_band(lambda first, last: img3[first:last], plan, (0, plan.shape[0]))


def resample_band(read_rows: Callable[[int, int], np.ndarray], plan: Resampling,
                  band: tuple[int, int], x_filtered: bool = False,
                  out: np.ndarray | None = None,
                  columns: tuple[int, int] | None = None,
                  x_window: tuple[int, int] | None = None) -> np.ndarray:
    """Output rows ``band = (a, b)`` of a plan, from only the input rows they need; of
    those rows, only the output columns ``columns = (c, d)`` if given (interpolation and
    nearest compute no others; a transposed convolution and the finishing steps compute
    whole rows, then cut them).

    ``x_window = (x0, x1)``: ``read_rows`` gives only the input's columns ``[x0, x1)``
    (a block of a bigger image, with the halo its outputs ``columns`` need: see
    :func:`~upconv.interpolate.interpolate_band`); interpolation at factors that are
    not whole numbers, and nearest, without finishing steps.

    ``read_rows(first, last)`` gives rows ``[first, last)`` of the planned
    image: float values (any dtype for nearest), or with ``x_filtered`` their
    spline coefficients along x (:func:`upconv.interpolate.x_coefficients`;
    a spline method without alpha or linear light). Every method is banded
    this way (:func:`~upconv.interpolate.interpolate_band`,
    :func:`~upconv.interpolate.nearest_band`,
    :func:`~upconv.transpose.transpose_band`, a post-kernel computed on a few
    more rows and cut), and the band equals the same rows of the whole image:
    exactly, or to float32 round-off for bicubic.

    ``out``, if given, receives the rows and is returned: float values, or
    integer samples rounded as :func:`~upconv.samples.from_float` rounds
    (inside the engine, without a float copy of the band, when nothing is
    left to do after it: no alpha, no linear light, no post-kernel).
    """
    method = plan.method
    finishing = plan.alpha or plan.linear_light or plan.post is not None
    assert x_window is None or not (finishing or plan.identity or method is Method.TRANSPOSE
                                    or x_filtered), x_window
    if columns is not None and (finishing or plan.identity or method is Method.TRANSPOSE):
        whole = resample_band(read_rows, plan, band, x_filtered)
        cut = whole[:, columns[0]:columns[1]]
        return np.ascontiguousarray(cut) if out is None else store_as(cut, out)
    if method is Method.NEAREST:
        rows = nearest_band(read_rows, plan.input_shape, plan.shape, band, plan.threads,
                            columns, x_window)
        return rows if out is None else store_as(rows, out)
    if x_filtered:
        assert not plan.alpha and not plan.linear_light and method is not Method.TRANSPOSE
    engine_out = None if finishing else out

    def prepared_rows(first: int, last: int) -> np.ndarray:
        return _prepared(read_rows(first, last), plan)

    reader = prepared_rows if plan.alpha or plan.linear_light else read_rows
    if plan.identity:
        values = np.array(reader(*band))  # never the caller's own rows
    elif method is Method.TRANSPOSE:
        assert plan.kernel is not None and plan.geometry is not None
        values = _transpose_band(reader, plan, band, engine_out)
    else:
        values = interpolate_band(reader, plan.input_shape, plan.shape, band,
                                  method.interpolation, plan.boundary, plan.threads,
                                  x_filtered=x_filtered, out=engine_out,
                                  halo=plan.spline_halo, columns=columns, x_window=x_window)
    if values is out:
        return out
    values = _finished(values, plan)
    return values if out is None else store_as(values, out)


def _transpose_band(read_rows: Callable[[int, int], np.ndarray], plan: Resampling,
                    band: tuple[int, int], out: np.ndarray | None) -> np.ndarray:
    """A transposed convolution's rows ``band``, with its post-kernel if it has one: the
    post-kernel's reach of rows more on each side (within the output) are computed, so
    that it sees the same rows as on the whole image, then cut away."""
    assert plan.kernel is not None and plan.geometry is not None
    if plan.post is None:
        return transpose_band(read_rows, plan.input_shape, plan.kernel, plan.boundary,
                              plan.geometry, band, plan.threads, out)
    reach = post_kernel_weights(plan.post).shape[0]
    first, last = max(0, band[0] - reach), min(plan.shape[0], band[1] + reach)
    rows = transpose_band(read_rows, plan.input_shape, plan.kernel, plan.boundary,
                          plan.geometry, (first, last), plan.threads)
    rows = post_convolve(rows, plan.post, plan.boundary)
    return rows[band[0] - first:band[1] - first]


def _prepared(img3: np.ndarray, plan: Resampling) -> np.ndarray:
    """The samples as they are interpolated: in linear light, premultiplied by alpha."""
    if plan.linear_light:
        colour = slice(0, img3.shape[2] - 1) if plan.alpha else slice(None)
        img3 = img3.copy()
        img3[..., colour] = srgb_to_linear(img3[..., colour])
    if plan.alpha:
        img3 = premultiply(img3)
    return img3


def _finished(out: np.ndarray, plan: Resampling) -> np.ndarray:
    """Interpolated samples back: alpha divided out, encoded to sRGB (in place)."""
    if plan.alpha:
        unpremultiply(out)
    if plan.linear_light:
        colour = slice(0, out.shape[2] - 1) if plan.alpha else slice(None)
        out[..., colour] = linear_to_srgb(out[..., colour])
    return out


def whole_factor(shape: tuple[int, int], out_shape: tuple[int, int]) -> int | None:
    """The period of a possible pattern: the factor, when it is one whole number >= 2.

    Examples
    --------
    >>> whole_factor((10, 20), (30, 60)), whole_factor((10, 20), (15, 30))
    (3, None)
    """
    (height, width), (out_h, out_w) = shape, out_shape
    if out_h % height or out_w % width or out_h // height != out_w // width:
        return None
    factor = out_h // height
    return factor if factor >= 2 else None


def stride_from_factor(factor: float | tuple[float, float] | None,
                       what: str = "a transposed convolution") -> int | None:
    """The stride a factor states: one whole number >= 2 for both axes, or None.

    This is the one rule for strides, for the API and every command's ``-f``
    where a stride is meant; ``what`` names the user of the stride in errors.

    Examples
    --------
    >>> stride_from_factor((3.0, 3.0)), stride_from_factor(None)
    (3, None)
    >>> stride_from_factor(2.5)
    Traceback (most recent call last):
    ...
    upconv.errors.BadInputError: a transposed convolution needs a whole factor >= 2, not 2.5
    """
    if factor is None:
        return None
    fy, fx = factor if isinstance(factor, tuple) else (factor, factor)
    fy, fx = _positive_factor(fy, "height"), _positive_factor(fx, "width")
    if fy != fx:
        raise BadInputError(f"{what} needs one factor for both axes (one stride); "
                            f"{fx:g}x{fy:g} differ")
    if fy != int(fy) or fy < 2:
        raise BadInputError(f"{what} needs a whole factor >= 2, not {fy:g}")
    return int(fy)
