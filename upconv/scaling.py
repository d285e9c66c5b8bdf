"""``upconv.scale``: the one entry point for every method, with the colour handling.

The numeric work lives in :mod:`upconv.interpolate` (splines) and
:mod:`upconv.transpose` (transposed convolution); this module resolves the
output size, validates the array, and wraps the resampling in linear-light
and premultiplied-alpha conversions when asked.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from .colour import linear_to_srgb, premultiply, srgb_to_linear, unpremultiply
from .errors import UpconvError
from .interpolate import interpolate, nearest
from .kernels import POST_KERNELS, Kernel, resolve_kernel
from .options import MAX_SIDE, Boundary, Method, choice
from .polyphase import default_threads
from .transpose import post_convolve, transposed_conv

__all__ = ["scale", "output_shape_for", "post_weights", "default_kernel", "stride_from_factor"]


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


def scale(image: np.ndarray, factor: float | tuple[float, float] | None = None,
          method: Method | str = "bicubic", boundary: Boundary | str | None = None, *,
          output_shape: tuple[int | None, int | None] | None = None,
          kernel: Kernel | str | Path | None = None,
          padding: int | tuple[int, int] | None = None,
          output_padding: int | tuple[int, int] = 0,
          post_kernel: np.ndarray | str | Path | None = None,
          alpha: bool = False, linear_light: bool = False,
          threads: int | None = None) -> np.ndarray:
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
    method : {"nearest", "bilinear", "bicubic", "transpose"}
        scipy.ndimage spline order 0, 1 or 3 (with prefilter), or a
        transposed convolution with ``kernel``.
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
        or a built-in name (``"nearest"``, ``"bilinear"``, ``"bicubic"``);
        default: the fitted default for factors 2, 3 and 4, else ``"bilinear"``.
    padding, output_padding : int or (int, int), optional
        For ``"transpose"``: PyTorch's ``ConvTranspose2d`` geometry instead of
        the centred one (see :mod:`upconv.transpose`).
    post_kernel : array, str or path, optional
        For ``"transpose"``: an ordinary stride-1 convolution applied after
        (``"binomial3"`` built in), the seed's remedy for checkerboards.
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
    method = choice(method, Method, "method")
    threads = default_threads() if threads is None else max(1, int(threads))
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise UpconvError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    planar = image.ndim == 2
    img3 = image[:, :, None] if planar else image
    height, width = img3.shape[:2]
    if method is not Method.TRANSPOSE:
        for name, value in (("kernel", kernel), ("padding", padding),
                            ("post_kernel", post_kernel)):
            if value is not None:
                raise UpconvError(f"{name} is for method='transpose' only")
        out_shape = output_shape_for((height, width), factor, output_shape)
        boundary = choice(boundary if boundary is not None else Boundary.EDGE, Boundary,
                          "boundary")

    if method is Method.NEAREST:
        result = nearest(img3, out_shape, threads)
        return result[:, :, 0] if planar else result

    if not np.issubdtype(img3.dtype, np.floating):
        raise UpconvError(f"{method.value} needs a float image (values in [0, 1]), "
                          f"got {img3.dtype}; convert with image / max_value")
    dtype = np.float64 if img3.dtype == np.float64 else np.float32
    img3 = img3.astype(dtype, copy=False)
    if method is Method.TRANSPOSE:
        if output_shape is not None:
            raise UpconvError("a transposed convolution scales by its stride; give a factor, "
                              "not an output shape")
        stride = stride_from_factor(factor)
        resolved = resolve_kernel(kernel if kernel is not None else default_kernel(stride),
                                  stride)
        alpha = alpha and not resolved.mixes_channels
        resolved = resolved.for_image(img3.shape[2], alpha)
        if boundary is None:  # PyTorch's geometry pads with zeros; fitted kernels know theirs
            torch_geometry = padding is not None or resolved.padding is not None
            boundary = Boundary.ZERO if torch_geometry else (
                resolved.info.get("boundary") or Boundary.EDGE)
        boundary = choice(boundary, Boundary, "boundary")

    colour = slice(0, img3.shape[2] - 1) if alpha else slice(None)
    if alpha and img3.shape[2] < 2:
        raise UpconvError("alpha=True needs an image with at least two channels")
    if linear_light:
        img3 = img3.copy()
        img3[..., colour] = srgb_to_linear(img3[..., colour])
    if alpha:
        img3 = premultiply(img3)
    if method is Method.TRANSPOSE:
        out = transposed_conv(img3, resolved, boundary, padding, output_padding, threads)
        if post_kernel is not None:
            out = post_convolve(out, post_weights(post_kernel), boundary)
    else:
        out = interpolate(img3, out_shape, method.order, boundary, threads)
    if alpha:
        unpremultiply(out)
    if linear_light:
        out[..., colour] = linear_to_srgb(out[..., colour])
    return out[:, :, 0] if planar and out.shape[2] == 1 else out


def default_kernel(stride: int | None) -> Kernel | str:
    """The kernel ``method="transpose"`` uses when none is given.

    The fitted default shipped for that factor (2, 3 or 4), else the built-in
    bilinear kernel.
    """
    if stride is not None:
        path = DEFAULTS_FOLDER / f"default_x{stride}.json"
        if path.is_file():
            kernel = Kernel.load(path)
            return replace(kernel, name=f"default x{stride}")
    return "bilinear"


#: Where the fitted default kernels live (package data).
DEFAULTS_FOLDER = Path(__file__).resolve().parent / "data"


def stride_from_factor(factor: float | tuple[float, float] | None) -> int | None:
    """The stride a factor states: one whole number >= 2 for both axes, or None."""
    if factor is None:
        return None
    fy, fx = factor if isinstance(factor, tuple) else (factor, factor)
    fy, fx = _positive_factor(fy, "height"), _positive_factor(fx, "width")
    if fy != fx:
        raise UpconvError(f"a transposed convolution has one stride; factors {fx}x{fy} differ")
    if fy != int(fy) or fy < 2:
        raise UpconvError(f"a transposed convolution needs a whole factor >= 2, not {fy:g}")
    return int(fy)


def post_weights(post_kernel: np.ndarray | str | Path) -> np.ndarray | str:
    """A post-kernel as weights (2-D array) or a built-in name, loading a file once."""
    if isinstance(post_kernel, np.ndarray) or (isinstance(post_kernel, str)
                                               and post_kernel in POST_KERNELS):
        return post_kernel
    loaded = Kernel.load(post_kernel)
    if loaded.weights.ndim != 2:
        raise UpconvError(f"{post_kernel}: a post-kernel must be 2-D")
    return loaded.weights
