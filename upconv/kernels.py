"""Transposed-convolution kernels: the ``Kernel`` type, built-ins, files, analysis.

A kernel is a weight array plus its stride (the integer upsampling factor) and
its alignment (where its taps land). Weight shapes follow PyTorch:

- ``(kH, kW)``: applied to every channel;
- ``(C, kH, kW)``: one kernel per channel;
- ``(C_in, C_out, kH, kW)``: ``ConvTranspose2d``'s layout, mixing channels.

Alignment ``"centred"`` (upconv's default) puts the kernel's centre on the
input pixel's centre, so a symmetric kernel gives a result on the half-pixel
grid when ``K - s`` is even (when it is odd the centre can only land half an
output pixel off); with an explicit ``padding`` P the kernel lands as in PyTorch
(``out[i*s - P + k] += w[k] * x[i]``).

The file formats live in :mod:`upconv.kernel_files`; this module is arithmetic
only (the type, its analysis, the built-ins and the convolution matrix).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputError
from .layers import stored_sum_error
from .methods import BUILTIN_KERNELS, InterpolationMethod, kernel_method

__all__ = ["Kernel", "BUILTIN_KERNELS", "POST_KERNELS", "builtin_kernel", "conv_matrix",
           "conv_output_shape", "MAX_KERNEL_SIDE"]

#: Largest kernel side accepted; bigger ones are almost surely a mistake.
MAX_KERNEL_SIDE = 1024
#: Largest stride accepted.
MAX_STRIDE = 256
#: Relative differences of phase sums below this are float round-off.
SPREAD_ROUND_OFF = 1e-12
#: Largest number of weights accepted.
MAX_KERNEL_WEIGHTS = 4_000_000
#: The ``format`` field of upconv's kernel ``.json`` files.
KERNEL_FORMAT = "upconv-kernel"


@dataclass(frozen=True, eq=False)
class Kernel:
    """Weights of a transposed convolution, with the stride and alignment to apply them.

    Parameters
    ----------
    weights : ndarray
        float64, shape ``(kH, kW)``, ``(C, kH, kW)`` or ``(C_in, C_out, kH, kW)``.
    stride : int or None
        The upsampling factor ``s >= 2``; ``None`` when the source did not say
        (then ``--factor`` supplies it).
    padding : int or None
        ``None`` for the centred alignment; an integer P for PyTorch's.
    output_padding : int or (int, int)
        PyTorch's ``output_padding`` (``0 <= Q < s``; PyTorch's geometry only):
        rows and columns added at the bottom and right of the output.
    bias : ndarray or None
        One value per output channel, added to the output as PyTorch's
        ``ConvTranspose2d`` adds its bias.
    name : str
        Where it came from, for reports ("bilinear", a file name, ...).
    info : dict
        Provenance and statistics carried in ``.json`` files.

    Examples
    --------
    >>> k = Kernel(np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]), stride=2)
    >>> k.shape, k.phase_sums().tolist(), k.spread()
    ((4, 4), [[1.0, 1.0], [1.0, 1.0]], 0.0)
    """

    weights: np.ndarray
    stride: int | None = None
    padding: int | None = None
    name: str = "kernel"
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    output_padding: int | tuple[int, int] = 0
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        weights = _validated_weights(self.weights, self.name)
        object.__setattr__(self, "weights", weights)
        if self.stride is not None:
            object.__setattr__(self, "stride", _validated_stride(self.stride, self.name))
        if self.padding is not None:
            object.__setattr__(self, "padding", _validated_padding(self.padding, self.name))
        object.__setattr__(self, "output_padding",
                           _validated_padding(self.output_padding, self.name, "output_padding"))
        if self.output_padding and self.padding is None:
            raise BadInputError(f"{self.name}: output_padding needs PyTorch's geometry "
                                "(a padding)")
        if self.bias is not None:
            object.__setattr__(self, "bias", _validated_bias(self.bias, self.name))

    # ----------------------------------------------------------------- shape
    @property
    def shape(self) -> tuple[int, int]:
        """(kH, kW), the spatial size."""
        return int(self.weights.shape[-2]), int(self.weights.shape[-1])

    @property
    def mixes_channels(self) -> bool:
        return self.weights.ndim == 4

    @property
    def alignment(self) -> str:
        return "centred" if self.padding is None else f"pytorch padding={self.padding}"

    def with_stride(self, factor: int | None) -> Kernel:
        """This kernel with its stride settled: from the kernel, else from ``factor``."""
        if factor is not None:
            factor = _validated_stride(factor, "--factor")
        if self.stride is not None and factor is not None and factor != self.stride:
            raise BadInputError(f"{self.name}: the kernel's stride is {self.stride} but the "
                              f"factor is {factor}; drop --factor or use a matching kernel")
        stride = self.stride if self.stride is not None else factor
        if stride is None:
            raise BadInputError(f"{self.name}: the kernel does not state its stride; "
                              "give --factor")
        kernel = replace(self, stride=stride)
        kernel.check_covers_stride()
        return kernel

    def check_covers_stride(self) -> None:
        """Refuse a kernel smaller than its stride: some output phases would get nothing."""
        if self.stride is not None and min(self.shape) < self.stride:
            raise BadInputError(f"{self.name}: a {self.shape[0]}x{self.shape[1]} kernel is smaller "
                              f"than its stride {self.stride}; some output pixels would never "
                              "be written")

    def check_channels(self, channels: int) -> None:
        """Refuse a kernel whose channel count does not fit an image with ``channels``."""
        if self.weights.ndim == 3 and self.weights.shape[0] != channels:
            raise BadInputError(f"{self.name}: one kernel per channel for "
                              f"{self.weights.shape[0]} channels, but the image has {channels}")
        if self.weights.ndim == 4 and self.weights.shape[0] != channels:
            raise BadInputError(f"{self.name}: C_in is {self.weights.shape[0]}, but the image has "
                              f"{channels} channels (an .npy laid out C x H x W needs "
                              "--layout chw)")

    def for_image(self, channels: int, alpha: bool) -> Kernel:
        """This kernel, ready for an image with ``channels`` (the last one alpha if ``alpha``).

        A per-channel kernel fitted on colour alone (as ``upconv fit`` does on
        RGBA pairs) gets the mean of its kernels for the alpha channel.
        """
        if self.weights.ndim == 3 and alpha and self.weights.shape[0] == channels - 1:
            weights = np.concatenate([self.weights, self.weights.mean(axis=0, keepdims=True)])
            return replace(self, weights=weights)
        self.check_channels(channels)
        return self

    def output_channels(self, channels: int) -> int:
        return int(self.weights.shape[1]) if self.weights.ndim == 4 else channels

    def check_bias(self, channels: int) -> None:
        """Refuse a bias whose length is not the output's channel count for ``channels``."""
        wanted = self.output_channels(channels)
        if self.bias is not None and self.bias.shape[0] != wanted:
            raise BadInputError(f"{self.name}: the bias has {self.bias.shape[0]} values, but the "
                                f"layer makes {wanted} channels")

    # ----------------------------------------------------------------- analysis
    def phase_offsets(self) -> tuple[int, int]:
        """Where tap 0 of input pixel ``i`` lands: output ``i*s + offset``, per axis.

        ``(s - K) // 2`` in the centred alignment, ``-padding`` in PyTorch's.

        Examples
        --------
        >>> Kernel(np.ones((3, 3)), stride=2).phase_offsets()
        (-1, -1)
        """
        s = self._stride_or_fail()
        if self.padding is None:
            return (s - self.shape[0]) // 2, (s - self.shape[1]) // 2
        rows, cols = (self.padding if isinstance(self.padding, tuple)
                      else (self.padding, self.padding))
        return -rows, -cols

    def sub_kernel(self, p: int, q: int) -> np.ndarray:
        """The taps that land on output phase ``(p, q)``: pixels ``(y, x)`` with
        ``y mod s = p`` and ``x mod s = q``, i.e. ``h[(p - oy) mod s::s, (q - ox) mod s::s]``.

        Examples
        --------
        >>> Kernel(np.arange(9.0).reshape(3, 3), stride=2).sub_kernel(0, 0)
        array([[4.]])
        """
        s = self._stride_or_fail()
        offset_y, offset_x = self.phase_offsets()
        return self.weights[..., (p - offset_y) % s::s, (q - offset_x) % s::s]

    def phase_sums(self) -> np.ndarray:
        """``S[p, q]``: the gain of output phase ``(p, q)`` (see :meth:`sub_kernel`).

        Phases are numbered as in the output image, pixel ``(y, x)`` being in
        phase ``(y mod s, x mod s)``, so a flat input ``c`` comes out as
        ``c * S[y mod s, x mod s]`` away from the borders: the pattern that
        :func:`upconv.report.build_report` measures. A flat input stays flat iff
        all are equal. Shape ``(s, s)`` for a 2-D kernel, ``(C, s, s)`` per
        channel, and ``(C_out, s, s)`` (summed over ``C_in``, i.e. for a flat
        input equal in every channel) for a channel-mixing kernel.

        Examples
        --------
        >>> Kernel(np.ones((3, 3)), stride=2).phase_sums().tolist()
        [[1.0, 2.0], [2.0, 4.0]]
        """
        s = self._stride_or_fail()
        lead = self.weights.shape[1:-2] if self.mixes_channels else self.weights.shape[:-2]
        sums = np.empty(lead + (s, s))
        for p in range(s):
            for q in range(s):
                block = self.sub_kernel(p, q)
                block = block.sum(axis=0) if self.mixes_channels else block
                sums[..., p, q] = block.sum(axis=(-2, -1))
        return sums

    def dc_gain(self) -> np.ndarray:
        """How much brighter a flat image comes out: the mean phase sum (per channel).

        1 for an interpolating kernel; the kernel's sum is ``s*s`` times it.

        Examples
        --------
        >>> float(Kernel(np.ones((3, 3)), stride=2).dc_gain())
        2.25
        """
        return self.phase_sums().mean(axis=(-2, -1))

    def spread(self) -> float:
        """``(max S - min S) / |mean S|``, worst over channels: 0 iff flat stays flat.

        Differences below :data:`SPREAD_ROUND_OFF` of the largest sum (or, for
        weights that are float32 values, their taps' count of float32 ulps) are float
        round-off (the sums of an exactly checkerboard-free kernel computed in
        floating point), and count as 0.

        Examples
        --------
        >>> Kernel(np.ones((3, 3)), stride=2).spread()  # 4, 2, 2, 1 ones per phase
        1.3333333333333333
        """
        s = self._stride_or_fail()
        sums = self.phase_sums().reshape(-1, s * s)
        # Weights read from a float32 file keep float32's round-off (summed over C_in for a
        # channel-mixing kernel, as its phase sums are).
        stored = stored_sum_error(self.weights, s)
        stored = np.ravel(stored.sum(axis=0) if self.mixes_channels else stored)
        stored = np.broadcast_to(stored, (sums.shape[0],))
        worst = 0.0
        for channel, error in zip(sums, stored, strict=True):
            width = float(channel.max() - channel.min())
            scale = float(np.abs(channel).max())
            if width <= max(SPREAD_ROUND_OFF * scale, 2 * float(error)):
                continue  # equal up to float round-off
            mean = abs(float(channel.mean()))
            worst = max(worst, width / mean if mean > 0 else math.inf)
        return worst

    @property
    def flat_stays_flat(self) -> bool:
        """All phase sums equal (up to round-off): no checkerboard from flat areas."""
        return self.spread() == 0.0

    def _stride_or_fail(self) -> int:
        if self.stride is None:
            raise BadInputError(f"{self.name}: the kernel does not state its stride; give --factor")
        return self.stride

    # ----------------------------------------------------------------- files
    def to_json(self) -> str:
        """The self-describing ``.json`` document (exact round trip of the weights)."""
        document: dict[str, Any] = {"format": KERNEL_FORMAT, "version": 1,
                                    "stride": self.stride, "alignment": "centred"
                                    if self.padding is None else "pytorch",
                                    "shape": list(self.weights.shape),
                                    "weights": self.weights.tolist()}
        if self.padding is not None:
            document["padding"] = self.padding
        if self.output_padding:
            document["output_padding"] = self.output_padding
        if self.bias is not None:
            document["bias"] = self.bias.tolist()
        document.update({k: v for k, v in self.info.items() if k not in document})
        return json.dumps(document, indent=1) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the kernel; the format follows the suffix (see :mod:`upconv.kernel_files`)."""
        from .kernel_files import save_kernel  # the file layer, only when files are used

        save_kernel(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Kernel:
        """Read a kernel file (``.json``, ``.npy``, ``.npz``, ``.txt``, ``.csv``)."""
        from .kernel_files import load_kernel  # the file layer, only when files are used

        return load_kernel(path)


# --------------------------------------------------------------------- validation

def _validated_stride(stride: object, name: str) -> int:
    try:
        value = float(stride)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadInputError(f"{name}: stride {stride!r} is not a number") from None
    if not math.isfinite(value) or value != int(value) or value < 2:
        raise BadInputError(f"{name}: a transposed convolution needs a whole stride >= 2, "
                          f"not {stride!r}")
    if value > MAX_STRIDE:
        raise BadInputError(f"{name}: stride {int(value)} is absurdly large (at most {MAX_STRIDE})")
    return int(value)


def _validated_padding(padding: object, name: str, what: str = "padding"
                       ) -> int | tuple[int, int]:
    """A whole number >= 0, or a (rows, columns) pair of them (as PyTorch takes)."""
    values = padding if isinstance(padding, (tuple, list)) else (padding,)
    if len(values) not in (1, 2) or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or v != int(v)
            or v < 0 for v in values):
        raise BadInputError(f"{name}: {what} must be a whole number >= 0 (or a pair of them), "
                          f"not {padding!r}")
    return int(values[0]) if len(values) == 1 else (int(values[0]), int(values[1]))


def _numbers(value: object, name: str, what: str, kinds: str) -> np.ndarray:
    """``value`` as an array of numbers of the dtype kinds ``kinds``, or a one-line error."""
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in kinds:
        raise BadInputError(f"{name}: {what} must be numbers, not {array.dtype}")
    return array


def _finite(array: np.ndarray, name: str, what: str) -> np.ndarray:
    """``array`` as float64, refusing NaN and infinities."""
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise BadInputError(f"{name}: {what} has NaN or infinite values")
    return array


def _validated_bias(bias: object, name: str) -> np.ndarray:
    """One finite number per output channel, as float64."""
    array = _numbers(bias, name, "the bias", "fiu")
    if array.ndim != 1 or array.size == 0:
        raise BadInputError(f"{name}: the bias is one number per output channel; got shape "
                            f"{array.shape}")
    return _finite(array, name, "the bias")


def _validated_weights(weights: object, name: str) -> np.ndarray:
    array = _numbers(weights, name, "kernel weights", "fiub")
    if array.ndim not in (2, 3, 4):
        raise BadInputError(f"{name}: a kernel must be 2-D (kH, kW), 3-D (C, kH, kW) or 4-D "
                          f"(C_in, C_out, kH, kW); got shape {array.shape}")
    if array.size == 0:
        raise BadInputError(f"{name}: the kernel is empty (shape {array.shape})")
    if max(array.shape[-2:]) > MAX_KERNEL_SIDE or array.size > MAX_KERNEL_WEIGHTS:
        raise BadInputError(f"{name}: a kernel of shape {array.shape} is absurdly large "
                          f"(at most {MAX_KERNEL_SIDE} per side)")
    return _finite(array, name, "the kernel")


# --------------------------------------------------------------------- built-ins

def _sampled(method: InterpolationMethod, stride: int) -> np.ndarray:
    """A method's kernel profile sampled for stride ``s`` on the half-pixel grid.

    The taps sit at output offsets ``(k - (K-1)/2) / s`` from the input pixel's
    centre; ``K`` has the parity of ``s`` so that the centred alignment is exact.
    A method whose weights are normalised per output pixel (Lanczos) gets each
    phase's taps ``h[p::s]`` divided by their sum: the same weights, so that
    the kernel reproduces the interpolation, and equal phase sums.
    """
    length = int(math.ceil(2 * method.kernel_support * stride))
    if (length - stride) % 2:
        length -= 1
    offsets = (np.arange(length) - (length - 1) / 2) / stride
    taps = method.kernel_profile(offsets)
    if method.normalise:
        for phase in range(stride):
            taps[phase::stride] /= taps[phase::stride].sum()
    return taps


def builtin_kernel(name: str, stride: int) -> Kernel:
    """The built-in kernel ``name`` for stride ``s``, sampled from its method's profile.

    ``nearest`` (box), ``bilinear`` (triangle), ``bicubic`` (Keys cubic,
    a = -0.5, Pillow's bicubic) and ``lanczos3`` (Pillow's Lanczos). With the
    centred alignment these reproduce nearest-neighbour, bilinear, Keys-bicubic
    and Lanczos interpolation at integer factors.

    Examples
    --------
    >>> builtin_kernel("bilinear", 2).weights[0].tolist()
    [0.0625, 0.1875, 0.1875, 0.0625]
    """
    method = kernel_method(name)
    if method is None:
        raise BadInputError(f"unknown kernel {name!r}; use a file or one of "
                            f"{', '.join(BUILTIN_KERNELS)}")
    stride = _validated_stride(stride, "--factor")
    taps = _sampled(method, stride)
    return Kernel(np.outer(taps, taps), stride=stride, name=name,
                  info={"separable": taps.tolist()})


#: Built-in post-kernels (ordinary stride-1 convolutions applied after).
POST_KERNELS = {"binomial3": np.outer([1, 2, 1], [1, 2, 1]) / 16.0}


# --------------------------------------------------------------------- the matrix view

def conv_output_shape(kernel_shape: tuple[int, int], input_shape: tuple[int, int],
                      stride: int = 1, padding: int = 0) -> tuple[int, int]:
    """Rows and columns of C: (output pixels, input pixels) of the convolution.

    Examples
    --------
    >>> conv_output_shape((3, 3), (4, 4))
    (4, 16)
    """
    k_h, k_w = kernel_shape
    height, width = input_shape
    out_h = (height + 2 * padding - k_h) // stride + 1
    out_w = (width + 2 * padding - k_w) // stride + 1
    if out_h < 1 or out_w < 1:
        raise BadInputError(f"a {k_h}x{k_w} kernel does not fit a {height}x{width} (HxW) input "
                          f"with padding {padding}")
    return out_h * out_w, height * width


def conv_matrix(weights: np.ndarray, input_shape: tuple[int, int], stride: int = 1,
                padding: int = 0) -> np.ndarray:
    """The matrix C of a 2-D convolution (deep-learning sense: no kernel flip).

    Each row is one placement of the kernel on the zero-padded input, so
    ``C @ x.ravel()`` is ``conv2d(x, w, stride, padding)`` flattened, and
    ``C.T @ y.ravel()`` is its adjoint, the transposed convolution.

    Examples
    --------
    >>> conv_matrix(np.ones((3, 3)), (4, 4)).shape
    (4, 16)
    >>> conv_matrix(np.array([[1.0, 2.0]]), (1, 3)).tolist()
    [[1.0, 2.0, 0.0], [0.0, 1.0, 2.0]]
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise BadInputError("the convolution matrix is defined for a 2-D kernel")
    k_h, k_w = weights.shape
    height, width = input_shape
    conv_output_shape(weights.shape, input_shape, stride, padding)  # refuses misfits
    out_h = (height + 2 * padding - k_h) // stride + 1
    out_w = (width + 2 * padding - k_w) // stride + 1
    matrix = np.zeros((out_h * out_w, height * width))
    for oy in range(out_h):
        for ox in range(out_w):
            row = oy * out_w + ox
            for ky in range(k_h):
                iy = oy * stride - padding + ky
                if not 0 <= iy < height:
                    continue
                for kx in range(k_w):
                    ix = ox * stride - padding + kx
                    if 0 <= ix < width:
                        matrix[row, iy * width + ix] = weights[ky, kx]
    return matrix
