"""Transposed convolution (``ConvTranspose2d``), computed in polyphase form.

A transposed convolution with stride ``s`` scatters each input pixel ``i``
through the kernel: ``out[i*s + offset + k] += w[k] * x[i]`` (2-D alike, no
kernel flip, as in PyTorch). Split the output by phase ``p = n mod s`` and
each phase is an ordinary small correlation at *input* resolution with the
sub-kernel ``w[r::s]`` (``r = (p - offset) mod s``, reversed): ``s*s``
correlations whose results interleave into the output. That is ``s*s`` times
less work than the textbook route (insert ``s - 1`` zeros between pixels, then
convolve), which :func:`zero_insertion_transpose` keeps as a reference.

Two geometries:

- **centred** (upconv's default): the kernel's centre lands on the input
  pixel's centre (``offset = floor((s - K) / 2)``), the output is exactly
  ``s*H x s*W``, and the input is first extended past its border by the
  boundary rule so borders are not darkened;
- **PyTorch** (``padding=P``): ``offset = -P`` and the output is
  ``(H - 1)*s - 2P + K + output_padding``; with ``boundary="zero"`` this is
  exactly ``torch.nn.functional.conv_transpose2d``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .errors import BadInputError
from .kernels import POST_KERNELS, Kernel
from .options import Boundary, choice
from .polyphase import Phases, Phases2D, apply_2d, apply_separable, band_of_periods

__all__ = ["transposed_conv", "apply_transpose", "transpose_band", "post_convolve",
           "post_kernel_weights",
           "zero_insertion_transpose",
           "output_size", "output_geometry", "TransposeGeometry", "AxisLayout", "axis_layout"]


def output_size(n_in: int, kernel_size: int, stride: int, padding: int | None,
                output_padding: int = 0) -> int:
    """Output length along one axis: ``s*n`` centred, else PyTorch's formula.

    Examples
    --------
    >>> output_size(5, 4, 2, None), output_size(5, 4, 2, 1), output_size(5, 3, 2, 1, 1)
    (10, 10, 10)
    """
    if padding is None:
        return stride * n_in
    return (n_in - 1) * stride - 2 * padding + kernel_size + output_padding


@dataclass(frozen=True)
class TransposeGeometry:
    """Where a transposed convolution's output lies: its size and the padding per axis.

    ``padding`` is ``(None, None)`` for the centred geometry, else PyTorch's
    padding along rows and columns.
    """

    shape: tuple[int, int]
    padding: tuple[int | None, int | None]

    @property
    def centred(self) -> bool:
        return self.padding[0] is None


def output_geometry(kernel: Kernel, shape: tuple[int, int],
                    padding: int | tuple[int, int] | None = None,
                    output_padding: int | tuple[int, int] | None = None) -> TransposeGeometry:
    """The output size of a transposed convolution of an image of ``shape``, and its padding.

    ``padding`` None means the kernel's own (None for the centred geometry), and
    ``output_padding`` None the kernel's own (0 unless it says).

    Examples
    --------
    >>> from upconv.kernels import builtin_kernel
    >>> output_geometry(builtin_kernel("bilinear", 2), (5, 6), padding=1, output_padding=1)
    TransposeGeometry(shape=(11, 13), padding=(1, 1))
    """
    stride = kernel.stride
    padding = kernel.padding if padding is None else padding
    output_padding = kernel.output_padding if output_padding is None else output_padding
    pad_y, pad_x = _pair(padding) if padding is not None else (None, None)
    extra_y, extra_x = _pair(output_padding)
    if pad_y is None and (extra_y or extra_x):
        raise BadInputError("output_padding needs the PyTorch geometry (a padding)")
    for value in (pad_y, pad_x):
        if value is not None and value < 0:
            raise BadInputError(f"padding must be >= 0, not {padding}")
    for value in (extra_y, extra_x):
        if not 0 <= value < stride:
            raise BadInputError(f"output_padding must be between 0 and stride - 1 = "
                              f"{stride - 1}, not {output_padding}")
    height, width = shape
    out_h = output_size(height, kernel.shape[0], stride, pad_y, extra_y)
    out_w = output_size(width, kernel.shape[1], stride, pad_x, extra_x)
    if out_h < 1 or out_w < 1:
        raise BadInputError(f"padding {padding} leaves no output for a {width}x{height} input")
    return TransposeGeometry((out_h, out_w), (pad_y, pad_x))


@dataclass(frozen=True)
class AxisLayout:
    """Where the taps of one axis go: the polyphase layout of ``out[i*s + offset + k]``."""

    start: np.ndarray  # (s,) first input index read by phase p, in extended coordinates
    tap_index: np.ndarray  # (s, T) kernel index of tap u of phase p, -1 where none
    before: int  # extension needed before the input
    after: int  # and after it
    periods: int  # M: output samples are s*M (cropped to the output size)


def axis_layout(kernel_size: int, stride: int, offset: int, n_in: int, n_out: int
                ) -> AxisLayout:
    """The polyphase layout of one axis: which kernel taps each output phase reads, and where.

    ``offset`` places tap 0 of input pixel ``i`` at output ``i*s + offset``.

    Examples
    --------
    >>> layout = axis_layout(4, 2, -1, 3, 6)
    >>> layout.tap_index.tolist(), layout.before, layout.after
    ([[3, 1], [2, 0]], 1, 1)
    """
    taps = math.ceil(kernel_size / stride)
    periods = math.ceil(n_out / stride)
    start = np.empty(stride, np.intp)
    tap_index = np.full((stride, taps), -1, np.intp)
    for p in range(stride):
        r = (p - offset) % stride
        shift = (p - offset - r) // stride
        start[p] = shift - taps + 1
        for u in range(taps):
            k = r + stride * (taps - 1 - u)
            if k < kernel_size:
                tap_index[p, u] = k
    before = max(0, -int(start.min()))
    after = max(0, (periods - 1) + int(start.max()) + taps - 1 - (n_in - 1))
    return AxisLayout(start + before, tap_index, before, after, periods)


def _gather_taps(weights: np.ndarray, axis_y: AxisLayout, axis_x: AxisLayout) -> np.ndarray:
    """weights[..., kH, kW] -> (sy, sx, Ty, Tx, ...) with zeros where a phase has no tap."""
    padded = np.concatenate([weights, np.zeros(weights.shape[:-1] + (1,))], axis=-1)
    padded = np.concatenate([padded, np.zeros(padded.shape[:-2] + (1, padded.shape[-1]))],
                            axis=-2)
    ky = axis_y.tap_index[:, None, :, None]  # -1 picks the zero row/column appended above
    kx = axis_x.tap_index[None, :, None, :]
    picked = padded[..., ky, kx]  # (..., sy, sx, Ty, Tx)
    return np.moveaxis(picked, tuple(range(weights.ndim - 2)),
                       tuple(range(-(weights.ndim - 2), 0))) if weights.ndim > 2 else picked


def _separable_factors(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) with ``outer(column, row) == weights`` if the kernel is rank one."""
    u, singular, vt = np.linalg.svd(weights)
    if singular.shape[0] > 1 and singular[1] > 1e-13 * singular[0]:
        return None
    root = math.sqrt(singular[0])
    return u[:, 0] * root, vt[0] * root


def transposed_conv(image: np.ndarray, kernel: Kernel, boundary: Boundary | str = "edge",
                    padding: int | tuple[int, int] | None = None,
                    output_padding: int | tuple[int, int] | None = None,
                    threads: int | None = None) -> np.ndarray:
    """The transposed convolution of a float image, polyphase.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        float32 or float64.
    kernel : Kernel
        With its stride set. Its own ``padding`` is used unless ``padding``
        is given.
    boundary : {"edge", "reflect", "zero"}
        How the input is extended past its border ("zero" for PyTorch).
    padding : int or (int, int), optional
        PyTorch's ``padding`` (one value, or (rows, columns)); ``None`` for the
        centred geometry.
    output_padding : int or (int, int), optional
        PyTorch's ``output_padding`` (``0 <= Q < s``); PyTorch geometry only.
        ``None``: the kernel's own. The kernel's ``bias``, if it has one, is
        added to each output channel.
    threads : int, optional
        Worker threads.

    Returns
    -------
    ndarray, shape (H', W', C_out), or (H', W') for a 2-D image and kernel

    Examples
    --------
    >>> from upconv.kernels import builtin_kernel
    >>> transposed_conv(np.array([[0.0, 1.0]]), builtin_kernel("bilinear", 2))
    array([[0.  , 0.25, 0.75, 1.  ],
           [0.  , 0.25, 0.75, 1.  ]])
    """
    boundary = choice(boundary, Boundary, "boundary")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise BadInputError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    if image.dtype.kind != "f":
        raise BadInputError(f"a transposed convolution needs a float image, got {image.dtype}")
    was_2d = image.ndim == 2
    img3 = image[:, :, None] if was_2d else image
    if kernel.stride is None:
        raise BadInputError(f"{kernel.name}: the kernel has no stride; give a factor")
    kernel.check_covers_stride()
    kernel.check_channels(img3.shape[2])
    kernel.check_bias(img3.shape[2])
    geometry = output_geometry(kernel, img3.shape[:2], padding, output_padding)
    out = apply_transpose(img3, kernel, boundary, geometry, threads)
    return out[:, :, 0] if was_2d and out.shape[2] == 1 else out


def apply_transpose(img3: np.ndarray, kernel: Kernel, boundary: Boundary,
                    geometry: TransposeGeometry, threads: int | None = None) -> np.ndarray:
    """:func:`transposed_conv` of an (H, W, C) image whose kernel and geometry are settled.

    The kernel fits the image's channels and ``geometry`` comes from
    :func:`output_geometry` for this image: nothing is checked again.
    """
    return transpose_band(lambda first, last: img3[first:last], img3.shape[:2], kernel,
                          boundary, geometry, (0, geometry.shape[0]), threads)


def transpose_band(read_rows: Callable[[int, int], np.ndarray], size: tuple[int, int],
                   kernel: Kernel, boundary: Boundary, geometry: TransposeGeometry,
                   band: tuple[int, int], threads: int | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Output rows ``band = (a, b)`` of :func:`apply_transpose` on an image of ``size``
    (H, W), from only the input rows they reach, in either geometry.

    ``read_rows(first, last)`` gives input rows ``[first, last)`` (H, W, C) as
    float. The band's output periods (``a // s`` to ``ceil(b / s)``) read
    extended input rows ``m + start[p] + u``; those rows are read, extended by
    the boundary rule where they pass the image's edge
    (:meth:`~upconv.options.Boundary.window`), and the periods computed from
    them: exactly the whole image's rows. The kernel's bias, if any, is added.
    ``out``, if given, receives the rows and is returned: float, or integer
    samples rounded as :func:`~upconv.samples.from_float` rounds (inside the
    engine, a few rows at a time, for 2-D and 3-D kernels without a bias).

    Examples
    --------
    >>> from upconv.kernels import builtin_kernel
    >>> image = np.arange(12.0).reshape(4, 3, 1)
    >>> kernel = builtin_kernel("bilinear", 2)
    >>> geometry = output_geometry(kernel, (4, 3), padding=1)
    >>> whole = apply_transpose(image, kernel, Boundary.ZERO, geometry)
    >>> band = transpose_band(lambda a, b: image[a:b], (4, 3), kernel, Boundary.ZERO,
    ...                       geometry, (3, 6))
    >>> bool((band == whole[3:6]).all())
    True
    """
    stride = kernel.stride
    assert stride is not None
    height, width = size
    out_h, out_w = geometry.shape
    pad_y, pad_x = geometry.padding
    k_h, k_w = kernel.shape
    offset_y = (stride - k_h) // 2 if pad_y is None else -pad_y
    offset_x = (stride - k_w) // 2 if pad_x is None else -pad_x
    axis_y = axis_layout(k_h, stride, offset_y, height, out_h)
    axis_x = axis_layout(k_w, stride, offset_x, width, out_w)
    first_period, end_period = band[0] // stride, -(-band[1] // stride)
    # Extended rows [lo, hi) feed those periods; phase starts made relative to row lo.
    lo = first_period + int(axis_y.start.min())
    hi = end_period - 1 + int(axis_y.start.max()) + axis_y.tap_index.shape[1]
    ext = boundary.window(read_rows, height, lo - axis_y.before, hi - axis_y.before,
                          (axis_x.before, axis_x.after))
    axis_y = replace(axis_y, start=axis_y.start + first_period - lo)
    rows, cols = band[1] - band[0], out_w
    channels_out = kernel.weights.shape[1] if kernel.weights.ndim == 4 else ext.shape[2]
    periods = (stride * (end_period - first_period), stride * axis_x.periods, channels_out)
    fits = out is not None and out.shape == periods and (
        out.dtype.kind == "f" or (kernel.weights.ndim < 4 and kernel.bias is None))
    target = out if fits else np.empty(periods, ext.dtype)
    _transpose_periods(ext, kernel.weights, axis_y, axis_x, target, threads)
    if kernel.bias is not None:
        target += kernel.bias.astype(target.dtype)  # one value per output channel
    return band_of_periods(target, band[0] - stride * first_period, rows, cols, out)


def _transpose_periods(ext: np.ndarray, weights: np.ndarray, axis_y: AxisLayout,
                       axis_x: AxisLayout, out: np.ndarray, threads: int | None) -> None:
    """The transposed convolution's whole output periods from the extended input, into
    ``out`` (float, or integer samples for 2-D and 3-D weights)."""
    dtype = ext.dtype
    if weights.ndim == 3 and np.all(weights == weights[:1]):
        weights = weights[0]  # the same kernel for every channel
    if weights.ndim == 2:
        factors = _separable_factors(weights)
        if factors is not None:
            column, row = factors
            apply_separable(ext, _phases_1d(column, axis_y, dtype),
                            _phases_1d(row, axis_x, dtype), out, threads)
        else:
            taps = _gather_taps(weights, axis_y, axis_x)
            apply_2d(ext, Phases2D(axis_y.start, axis_x.start, taps), out, threads)
    elif weights.ndim == 3:
        taps = _gather_taps(weights, axis_y, axis_x)  # (sy, sx, Ty, Tx, C)
        apply_2d(ext, Phases2D(axis_y.start, axis_x.start, taps), out, threads)
    else:  # (C_in, C_out, kH, kW): each output channel sums C_in depthwise results
        partial = np.empty(out.shape[:2] + (ext.shape[2],), dtype)
        for co in range(weights.shape[1]):
            taps = _gather_taps(weights[:, co], axis_y, axis_x)
            apply_2d(ext, Phases2D(axis_y.start, axis_x.start, taps), partial, threads)
            partial.sum(axis=2, out=out[:, :, co])


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, tuple):
        if len(value) != 2:
            raise BadInputError(f"expected one value or (rows, columns), not {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _phases_1d(taps_1d: np.ndarray, axis: AxisLayout, dtype: np.dtype) -> Phases:
    padded = np.append(taps_1d, 0.0)  # index -1 -> 0
    return Phases(axis.start, padded[axis.tap_index].astype(dtype))


def post_kernel_weights(post: np.ndarray | str) -> np.ndarray:
    """A post-kernel's 2-D weights: a built-in's by name, or the array given.

    Examples
    --------
    >>> post_kernel_weights("binomial3").sum()
    np.float64(1.0)
    """
    if isinstance(post, str):
        if post not in POST_KERNELS:
            raise BadInputError(f"unknown post-kernel {post!r}; use a file or "
                              f"{', '.join(POST_KERNELS)}")
        return POST_KERNELS[post]
    weights = np.asarray(post, dtype=np.float64)
    if weights.ndim != 2:
        raise BadInputError(f"a post-kernel must be 2-D, got shape {weights.shape}")
    return weights


def post_convolve(image: np.ndarray, post: np.ndarray | str, boundary: Boundary) -> np.ndarray:
    """An ordinary stride-1, same-size convolution (correlation, no flip) per channel.

    The remedy for checkerboards that Shibuya's "Up-sampling with Transposed
    Convolution" and Odena, Dumoulin and Olah's "Deconvolution and
    Checkerboard Artifacts" (Distill, 2016) discuss: smooth after the
    transposed convolution. ``post`` is a 2-D array, or a built-in name
    (``"binomial3"``, the 3x3 binomial ``[1 2 1]^T [1 2 1] / 16``).

    Examples
    --------
    >>> post_convolve(np.ones((4, 4, 1)), "binomial3", Boundary.EDGE)[..., 0].round(6).tolist()[0]
    [1.0, 1.0, 1.0, 1.0]
    """
    weights = post_kernel_weights(post)
    from scipy import ndimage  # only here: importing it costs a quarter of a second

    mode = {"edge": "nearest", "reflect": "reflect", "zero": "constant"}[boundary.value]
    out = np.empty_like(image)
    for c in range(image.shape[2]):
        ndimage.correlate(image[:, :, c], weights.astype(image.dtype), output=out[:, :, c],
                          mode=mode)
    return out


def zero_insertion_transpose(image: np.ndarray, weights: np.ndarray, stride: int,
                             padding: int = 0, output_padding: int = 0) -> np.ndarray:
    """The textbook transposed convolution: insert zeros, then convolve. Slow; a reference.

    Puts ``s - 1`` zeros between the input pixels, convolves with the
    kernel (``scipy.ndimage.convolve``, a true convolution, which is what
    the scatter ``out[i*s + k] += w[k] x[i]`` amounts to), and crops
    ``padding`` from each side as PyTorch does. ``(s*s - 1)`` of every ``s*s``
    multiplications are by zero. For one 2-D channel.

    Examples
    --------
    >>> zero_insertion_transpose(np.array([[1.0, 2.0]]), np.array([[1.0, 10.0]]), 2)
    array([[ 1., 10.,  2., 20.]])
    """
    from scipy import ndimage

    k_h, k_w = weights.shape
    height, width = image.shape
    inserted = np.zeros(((height - 1) * stride + 1, (width - 1) * stride + 1))
    inserted[::stride, ::stride] = image
    # Room for the full convolution (K - 1 more samples), and an origin that
    # anchors tap 0 on the pixel: full[n] = sum_k w[k] * inserted[n - k].
    canvas = np.pad(inserted, ((0, k_h - 1), (0, k_w - 1)))
    full = ndimage.convolve(canvas, weights, mode="constant", origin=(-(k_h // 2), -(k_w // 2)))
    out_h = output_size(height, k_h, stride, padding, output_padding)
    out_w = output_size(width, k_w, stride, padding, output_padding)
    result = np.zeros((out_h, out_w))
    piece = full[padding:padding + out_h, padding:padding + out_w]
    result[:piece.shape[0], :piece.shape[1]] = piece
    return result
