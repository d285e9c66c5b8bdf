"""The interpolation methods, each described once: weights, support, prefilter, halo.

Every resampler in upconv reads a method's :class:`InterpolationMethod`
entry and nothing else: the separable interpolation (:mod:`upconv.interpolate`)
takes its tap count, weight function and, for bands of rows, its prefilter's
halo, and the built-in transposed-convolution kernels (:mod:`upconv.kernels`)
sample its kernel profile. Adding a method is one entry in :data:`METHODS`
(plus tests).

Weights are functions of the offset ``t`` (in input pixels) between an input
sample and the point being interpolated, on the half-pixel grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["InterpolationMethod", "METHODS", "Method", "BUILTIN_KERNELS", "kernel_method",
           "keys_cubic", "cubic_bspline", "lanczos", "SPLINE_HALO"]

#: Input rows a band reads beyond its taps for the cubic spline prefilter, whose
#: support is infinite but decays by |pole| = 0.268 per pixel (0.268**16 < 1e-9).
SPLINE_HALO = 18

Weights = Callable[[np.ndarray], np.ndarray]


def box(t: np.ndarray) -> np.ndarray:
    """Zero-order hold: 1 on (-1/2, 1/2], else 0."""
    return ((t > -0.5) & (t <= 0.5)).astype(np.float64)


def triangle(t: np.ndarray) -> np.ndarray:
    """Linear interpolation: ``max(0, 1 - |t|)``."""
    return np.maximum(0.0, 1.0 - np.abs(t))


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline (support 4), used with its prefilter by scipy's ``order=3``.

    Examples
    --------
    >>> cubic_bspline(np.array([0.0, 1.0, 2.0])).round(4).tolist()
    [0.6667, 0.1667, 0.0]
    """
    t = np.abs(t)
    inner = 2.0 / 3.0 - t * t + 0.5 * t ** 3
    outer = (2.0 - t) ** 3 / 6.0
    return np.where(t < 1.0, inner, np.where(t < 2.0, outer, 0.0))


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5 is Pillow's "bicubic").

    Examples
    --------
    >>> keys_cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0])).tolist()
    [1.0, 0.5625, 0.0, -0.0625, 0.0]
    """
    t = np.abs(np.asarray(t, dtype=np.float64))
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def lanczos(t: np.ndarray, a: int = 3) -> np.ndarray:
    """The Lanczos window ``sinc(t) sinc(t / a)`` on ``[-a, a)``, as Pillow's ``LANCZOS``.

    Examples
    --------
    >>> lanczos(np.array([0.0, 1.0, 0.5])).round(4).tolist()
    [1.0, 0.0, 0.6079]
    """
    t = np.asarray(t, dtype=np.float64)
    return np.where((t >= -a) & (t < a), np.sinc(t) * np.sinc(t / a), 0.0)


@dataclass(frozen=True)
class InterpolationMethod:
    """Everything a resampler needs to know about one interpolation method.

    Attributes
    ----------
    name : str
        The ``--method`` name.
    weights : callable
        Weight of an input sample at offset ``t`` from the interpolated point.
    taps : int
        Input samples per output sample (the support width).
    prefilter : bool
        The weights are a cubic B-spline applied to prefiltered coefficients
        (scipy's ``order=3``), not to the samples.
    normalise : bool
        Divide each output sample's weights by their sum (Pillow does this for
        Lanczos, whose sampled weights do not sum to exactly 1).
    halo : int
        Input rows a band reads on each side beyond those its taps reach: the
        prefilter's start-up (0 for a finite support).
    kernel_name : str
        The name of the built-in transposed-convolution kernel made from
        ``kernel_profile``.
    kernel_profile : callable
        The finite kernel the built-in samples (for ``bicubic``, Keys' cubic:
        a prefiltered spline has no finite kernel).
    kernel_support : float
        Half-width of ``kernel_profile``, in input pixels.
    scipy_order : int or None
        The ``scipy.ndimage`` spline order this method equals, if any.
    """

    name: str
    weights: Weights
    taps: int
    prefilter: bool
    normalise: bool
    halo: int
    kernel_name: str
    kernel_profile: Weights
    kernel_support: float
    scipy_order: int | None

    def first_tap(self, coords: np.ndarray) -> np.ndarray:
        """Index of the first input sample each coordinate reads.

        As scipy: an even number of taps starts at ``floor(c) - taps/2 + 1``, an odd
        number at ``floor(c + 1/2) - (taps - 1)/2`` (nearest rounds half up).
        """
        if self.taps % 2:
            return np.floor(coords + 0.5).astype(np.intp) - (self.taps - 1) // 2
        return np.floor(coords).astype(np.intp) - self.taps // 2 + 1

    def tap_weights(self, offsets: np.ndarray) -> np.ndarray:
        """Weights for an (n, taps) array of offsets ``coordinate - input index``."""
        if self.taps == 1:
            return np.ones_like(offsets)
        weights = self.weights(offsets)
        if self.normalise:
            weights = weights / weights.sum(axis=-1, keepdims=True)
        return weights

    @property
    def pad(self) -> int:
        """Samples of extension each side that every tap stays within."""
        return max(1, self.taps // 2)


METHODS: dict[str, InterpolationMethod] = {m.name: m for m in (
    InterpolationMethod("nearest", box, taps=1, prefilter=False, normalise=False, halo=0,
                        kernel_name="nearest", kernel_profile=box, kernel_support=0.5,
                        scipy_order=0),
    InterpolationMethod("bilinear", triangle, taps=2, prefilter=False, normalise=False,
                        halo=0, kernel_name="bilinear", kernel_profile=triangle,
                        kernel_support=1.0, scipy_order=1),
    InterpolationMethod("bicubic", cubic_bspline, taps=4, prefilter=True, normalise=False,
                        halo=SPLINE_HALO, kernel_name="bicubic", kernel_profile=keys_cubic,
                        kernel_support=2.0, scipy_order=3),
    InterpolationMethod("lanczos", lanczos, taps=6, prefilter=False, normalise=True, halo=0,
                        kernel_name="lanczos3", kernel_profile=lanczos, kernel_support=3.0,
                        scipy_order=None),
)}

#: The built-in transposed-convolution kernels, by name, and the method each samples.
_KERNEL_METHODS = {m.kernel_name: m for m in METHODS.values()}
BUILTIN_KERNELS = tuple(_KERNEL_METHODS)


def kernel_method(name: str) -> InterpolationMethod | None:
    """The method whose built-in kernel is called ``name``, or None."""
    return _KERNEL_METHODS.get(name)


class Method(str, Enum):
    """Upsampling methods: the interpolation methods of :data:`METHODS`, and transpose."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"
    TRANSPOSE = "transpose"

    @property
    def interpolation(self) -> InterpolationMethod:
        """The method's description (not for ``transpose``)."""
        return METHODS[self.value]


assert {m.value for m in Method} == set(METHODS) | {"transpose"}, "Method and METHODS agree"
