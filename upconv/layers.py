"""Transposed-convolution layers in PyTorch's terms: the checkerboard figure, the nearest
checkerboard-free weights, and checkerboard-free initialisations.

A ``ConvTranspose2d`` weight ``W`` has shape ``(C_in, C_out, kH, kW)``. With stride
``s``, the taps of ``W[i, o]`` that land on output phase ``(p, q)`` (output pixels
``(y, x)`` with ``y mod s = p``, ``x mod s = q``) sum to the *phase sum*
``S[i, o, p, q]``: a constant input of 1 in channel ``i`` comes out of channel ``o``
as ``S[i, o, y mod s, x mod s]`` away from the borders. Split each ``s x s`` block
into its mean and its periodic part ``D = S - mean_pq S``; ``D`` is the
checkerboard a flat input prints (Odena, Dumoulin and Olah, "Deconvolution and
Checkerboard Artifacts"). Per output channel ``o``:

- ``flat_each[o] = sqrt(sum_i mean_pq D[i, o]**2)``: the RMS checkerboard when
  every input channel holds its own flat value, independent and of unit
  variance (a feature map's flat regions);
- ``flat_together[o] = sqrt(mean_pq (sum_i D[i, o])**2)``: the RMS checkerboard
  for a flat input equal to 1 in every channel (a grey image);
- ``gain[o] = ||W[:, o]||_F / s``: the RMS output for unit-variance white noise
  in every input channel (each output pixel sums the squares of the taps of
  its phase; averaged over the ``s*s`` phases that is ``||W[:, o]||_F**2 / s**2``);
- ``checkerboard[o] = 100 * flat_each[o] / gain[o]`` percent: the figure.

The figure does not change when the weights are scaled, is 0 exactly when
every ``(C_in, C_out)`` pair has equal phase sums (bilinear and ICNR
initialisations, or :func:`fix_checkerboard`'s output), and does not blow up
when a channel's mean response is 0, as ``(max - min) / |mean|`` of the
summed phase sums did. The padding of a layer only renames the phases, so the
figure does not depend on it.

Two- and three-dimensional kernels are layers too: ``(kH, kW)`` is one channel
to one channel, and ``(C, kH, kW)`` is depthwise (channel ``c`` to channel ``c``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import BadInputError

__all__ = ["LayerFigures", "layer_figures", "phase_sums", "fix_checkerboard", "guess_stride",
           "bilinear_init", "icnr_init", "as_layer", "storage_ulp", "stored_sum_error",
           "ROUND_OFF", "VERDICTS"]

#: Periodic parts below this fraction of the largest phase sum are float round-off (and,
#: for weights that are float32 or float16 values, below their taps' count of ulps:
#: :func:`storage_ulp`).
ROUND_OFF = 1e-12
#: Verdicts of the checkerboard figure (percent): below each bound, its word.
VERDICTS = ((1e-6, "none"), (1.0, "faint"), (10.0, "visible"), (math.inf, "strong"))


def as_layer(weights: np.ndarray) -> np.ndarray:
    """Any kernel as a ``(C_in, C_out, kH, kW)`` layer: a 2-D kernel is 1 to 1, a 3-D one
    depthwise (its channels on the diagonal).

    Examples
    --------
    >>> as_layer(np.ones((2, 3, 3))).shape, float(as_layer(np.ones((2, 3, 3)))[0, 1].sum())
    ((2, 2, 3, 3), 0.0)
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 2:
        return weights[None, None]
    if weights.ndim == 3:
        layer = np.zeros((weights.shape[0],) + weights.shape)
        for channel in range(weights.shape[0]):
            layer[channel, channel] = weights[channel]
        return layer
    if weights.ndim == 4:
        return weights
    raise BadInputError(f"a layer's weight is 4-D (C_in, C_out, kH, kW); got shape "
                        f"{weights.shape}")


def _phase_slices(size: tuple[int, int], stride: int, offsets: tuple[int, int]
                  ) -> list[tuple[int, int, slice, slice]]:
    """``(p, q, rows, cols)``: the taps of a ``size`` kernel that land on phase ``(p, q)``
    when tap 0 of input pixel ``i`` lands on output ``i*s + offset``."""
    return [(p, q, slice((p - offsets[0]) % stride, None, stride),
             slice((q - offsets[1]) % stride, None, stride))
            for p in range(stride) for q in range(stride)]


def storage_ulp(weights: np.ndarray) -> float:
    """The relative round-off of the narrowest float type that holds every weight exactly:
    float16's, float32's or float64's epsilon (0 for integers). Weights read from a
    float32 checkpoint keep float32's round-off after they are widened to float64.

    Examples
    --------
    >>> storage_ulp(np.float32([0.1, 0.2])) == float(np.finfo(np.float32).eps)
    True
    >>> storage_ulp(np.array([0.1])) == float(np.finfo(np.float64).eps)
    True
    """
    weights = np.asarray(weights)
    if weights.dtype.kind != "f":
        return 0.0
    for narrow in (np.float16, np.float32):
        if np.finfo(narrow).bits >= np.finfo(weights.dtype).bits:
            return float(np.finfo(weights.dtype).eps)
        with np.errstate(over="ignore"):
            if np.array_equal(weights.astype(narrow).astype(weights.dtype), weights):
                return float(np.finfo(narrow).eps)
    return float(np.finfo(weights.dtype).eps)


def stored_sum_error(weights: np.ndarray, stride: int) -> np.ndarray:
    """How far a phase sum can be off from the weights' storage alone, for every leading
    index of ``weights`` (``(..., kH, kW)``): each tap is off by half an ulp of its stored
    type (:func:`storage_ulp`), so a phase's sum by at most its taps' count of ulps of the
    largest weight.

    Examples
    --------
    >>> float(stored_sum_error(np.ones((3, 3)), 2))  # 1.0 is a float16 value: 4 ulps of it
    0.00390625
    """
    weights = np.asarray(weights)
    most_taps = math.ceil(weights.shape[-2] / stride) * math.ceil(weights.shape[-1] / stride)
    return most_taps * storage_ulp(weights) * np.abs(weights).max(axis=(-2, -1))


def phase_sums(weights: np.ndarray, stride: int, offsets: tuple[int, int] = (0, 0)
               ) -> np.ndarray:
    """``S[..., p, q]``: the sum of the taps landing on output phase ``(p, q)``, for every
    leading index of ``weights`` (``(..., kH, kW)``).

    ``offsets`` place tap 0 (``-padding`` in PyTorch's geometry); they only rename
    the phases.

    Examples
    --------
    >>> phase_sums(np.ones((3, 3)), 2).tolist()
    [[4.0, 2.0], [2.0, 1.0]]
    """
    weights = np.asarray(weights, dtype=np.float64)
    sums = np.empty(weights.shape[:-2] + (stride, stride))
    for p, q, rows, cols in _phase_slices(weights.shape[-2:], stride, offsets):
        sums[..., p, q] = weights[..., rows, cols].sum(axis=(-2, -1))
    return sums


@dataclass(frozen=True)
class LayerFigures:
    """A layer's checkerboard figures, per output channel (see the module's docstring).

    ``checkerboard`` is in percent; ``worst_input`` is the input channel whose
    flat value prints the largest checkerboard on each output channel;
    ``mean_response`` the mean phase sum for a flat input of 1 in every
    channel (the layer's DC gain).
    """

    stride: int
    checkerboard: np.ndarray  # (C_out,) percent
    flat_each: np.ndarray  # (C_out,)
    flat_together: np.ndarray  # (C_out,)
    gain: np.ndarray  # (C_out,)
    worst_input: np.ndarray  # (C_out,) int
    mean_response: np.ndarray  # (C_out,)

    @property
    def figure(self) -> float:
        """The layer's figure: its worst output channel's, in percent."""
        return float(self.checkerboard.max())

    @property
    def worst_output(self) -> int:
        return int(np.argmax(self.checkerboard))

    @property
    def verdict(self) -> str:
        return verdict_for(self.figure)

    def as_dict(self) -> dict:
        """Plain numbers, for ``--json``."""
        return {"stride": self.stride, "checkerboard_percent": self.figure,
                "verdict": self.verdict, "worst_output_channel": self.worst_output,
                "per_output_channel": [
                    {"checkerboard_percent": float(self.checkerboard[o]),
                     "flat_each_rms": float(self.flat_each[o]),
                     "flat_together_rms": float(self.flat_together[o]),
                     "white_noise_gain": float(self.gain[o]),
                     "worst_input_channel": int(self.worst_input[o]),
                     "mean_response": float(self.mean_response[o])}
                    for o in range(self.checkerboard.shape[0])]}


def verdict_for(percent: float) -> str:
    """The word for a checkerboard figure in percent.

    Examples
    --------
    >>> verdict_for(0.0), verdict_for(0.5), verdict_for(4.0), verdict_for(40.0)
    ('none', 'faint', 'visible', 'strong')
    """
    return next(word for bound, word in VERDICTS if percent < bound)


def layer_figures(weights: np.ndarray, stride: int) -> LayerFigures:
    """The checkerboard figures of a layer (any kernel: see :func:`as_layer`).

    Examples
    --------
    >>> bilinear = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16.0
    >>> layer_figures(bilinear, 2).figure
    0.0
    >>> round(layer_figures(np.ones((3, 3)), 2).figure, 1)  # sums 4, 2, 2, 1; gain 3 / 2
    72.6
    """
    layer = as_layer(weights)
    sums = phase_sums(layer, stride)  # (C_in, C_out, s, s)
    periodic = sums - sums.mean(axis=(-2, -1), keepdims=True)
    # Equal up to round-off: of the sums here, and of the weights' storage (float32 weights
    # keep float32's round-off once widened).
    stored = stored_sum_error(layer, stride)
    tolerance = np.maximum(ROUND_OFF * np.abs(sums).max(axis=(-2, -1), keepdims=True),
                           stored[..., None, None])
    periodic[np.abs(periodic) <= tolerance] = 0.0
    each_pair = np.sqrt((periodic ** 2).mean(axis=(-2, -1)))  # (C_in, C_out)
    flat_each = np.sqrt((each_pair ** 2).sum(axis=0))
    together = periodic.sum(axis=0)
    flat_together = np.sqrt((together ** 2).mean(axis=(-2, -1)))
    gain = np.sqrt((layer ** 2).sum(axis=(0, 2, 3))) / stride
    with np.errstate(divide="ignore", invalid="ignore"):
        checkerboard = np.where(gain > 0, 100.0 * flat_each / gain, 0.0)
    return LayerFigures(stride, checkerboard, flat_each, flat_together, gain,
                        np.argmax(each_pair, axis=0), sums.sum(axis=0).mean(axis=(-2, -1)))


def fix_checkerboard(weights: np.ndarray, stride: int) -> np.ndarray:
    """The nearest weights (least squares, Frobenius norm) whose phase sums are equal for
    every ``(C_in, C_out)`` pair (every channel of a 2-D or 3-D kernel), so that a flat
    input stays flat.

    Per pair, phase ``g`` has ``n_g`` taps summing to ``S_g``; the closest weights
    with all phase sums equal to a common ``c`` move each tap of phase ``g`` by
    ``(c - S_g) / n_g``, and the best common value is the weighted mean
    ``c = (sum_g S_g / n_g) / (sum_g 1 / n_g)`` (the minimum of
    ``sum_g (c - S_g)**2 / n_g``). The result has the input's shape and dtype.

    Examples
    --------
    >>> fixed = fix_checkerboard(np.ones((3, 3)), 2)  # sums 4, 2, 2, 1 of 4, 2, 2, 1 taps
    >>> phase_sums(fixed, 2).round(6).tolist()  # c = 4 / (1/4 + 1/2 + 1/2 + 1)
    [[1.777778, 1.777778], [1.777778, 1.777778]]
    """
    original = np.asarray(weights)
    fixed = original.astype(np.float64)
    if min(fixed.shape[-2:]) < stride:
        raise BadInputError(f"a {fixed.shape[-2]}x{fixed.shape[-1]} kernel is smaller than "
                            f"its stride {stride}: some phases have no taps to adjust")
    slices = _phase_slices(fixed.shape[-2:], stride, (0, 0))
    counts = [fixed[..., rows, cols].shape[-1] * fixed[..., rows, cols].shape[-2]
              for _, _, rows, cols in slices]
    sums = [fixed[..., rows, cols].sum(axis=(-2, -1)) for _, _, rows, cols in slices]
    common = (sum(s / n for s, n in zip(sums, counts, strict=True))
              / sum(1.0 / n for n in counts))
    for (_, _, rows, cols), total, count in zip(slices, sums, counts, strict=True):
        fixed[..., rows, cols] += ((common - total) / count)[..., None, None]
    return fixed.astype(original.dtype if original.dtype.kind == "f" else np.float64)


def guess_stride(kernel_size: int) -> int:
    """The stride a ``kernel_size`` usually goes with: ``K = 2s`` or ``K = 2s - 1``, so
    ``ceil(K / 2)``, and at least 2 (``K = 2``: the common ``kernel_size=2, stride=2``).

    Examples
    --------
    >>> [guess_stride(k) for k in (2, 3, 4, 5, 6, 8)]
    [2, 2, 2, 3, 3, 4]
    """
    return max(2, math.ceil(kernel_size / 2))


def bilinear_init(channels_in: int, channels_out: int, size: int, stride: int) -> np.ndarray:
    """The bilinear initialisation of fully convolutional networks (Long, Shelhamer and
    Darrell, "Fully Convolutional Networks for Semantic Segmentation"): each input
    channel to the same output channel through the bilinear kernel of the stride,
    ``(1 - |y - c| / s) (1 - |x - c| / s)`` with ``c = (K - 1) / 2`` (the FCN filter
    for ``K = 2s`` and ``2s - 1``), other pairs zero.

    Examples
    --------
    >>> bilinear_init(1, 1, 4, 2)[0, 0, 0].tolist()
    [0.0625, 0.1875, 0.1875, 0.0625]
    """
    if channels_in != channels_out:
        raise BadInputError(f"the bilinear initialisation maps each channel to itself, so it "
                            f"needs as many input as output channels, not {channels_in} and "
                            f"{channels_out}; use icnr")
    if size < 2 * stride - 1:
        raise BadInputError(f"a {size}x{size} kernel cuts the bilinear kernel of stride {stride} "
                            f"short; use a size of at least {2 * stride - 1}")
    offsets = np.abs(np.arange(size) - (size - 1) / 2.0) / stride
    taps = np.clip(1.0 - offsets, 0.0, None)
    weights = np.zeros((channels_in, channels_out, size, size))
    for channel in range(channels_in):
        weights[channel, channel] = np.outer(taps, taps)
    return weights


def icnr_init(channels_in: int, channels_out: int, size: int, stride: int,
              rng: np.random.Generator) -> np.ndarray:
    """A random checkerboard-free initialisation: ICNR (Aitken et al., "Checkerboard
    artifact free sub-pixel convolution") adapted to the transposed convolution.

    A random stride-1 kernel ``R`` of size ``K - s + 1`` is convolved with the
    ``s x s`` box, so every phase of every pair sums to ``sum(R)``: the layer is
    nearest-neighbour upsampling followed by the convolution ``R``. ``R`` is drawn
    as PyTorch initialises that ``Conv2d`` (uniform in ``+-1 / sqrt(C_in (K-s+1)**2)``).

    Examples
    --------
    >>> weights = icnr_init(3, 2, 4, 2, np.random.default_rng(0))
    >>> weights.shape, layer_figures(weights, 2).figure
    ((3, 2, 4, 4), 0.0)
    """
    if size < stride:
        raise BadInputError(f"a {size}x{size} kernel is smaller than its stride {stride}")
    small = size - stride + 1
    bound = 1.0 / math.sqrt(channels_in * small * small)
    seed_kernel = rng.uniform(-bound, bound, (channels_in, channels_out, small, small))
    weights = np.zeros((channels_in, channels_out, size, size))
    for dy in range(stride):  # the full 2-D convolution of R with the s x s box
        for dx in range(stride):
            weights[..., dy:dy + small, dx:dx + small] += seed_kernel
    return weights
