"""Downscaling HIGH images into LOW ones, to fit kernels from HIGH images alone.

A fitted kernel is optimal for the degradation it was trained on, so the
kernel file records which one:

- ``area``: the mean of each ``s x s`` block (box filter and decimation),
  what a camera sensor with ``s`` times bigger pixels would record;
- ``bicubic``: Pillow's antialiased bicubic downscaling (Keys a = -0.5,
  support widened by ``s``), what most image tools produce;
- ``gaussian``: a Gaussian blur (sigma = ``s / 2`` HIGH pixels) sampled at the
  LOW pixel centres, a smooth optical blur.

All three keep the half-pixel grid: LOW pixel ``m`` is centred on HIGH
coordinate ``s*m + (s - 1)/2``. Extra right and bottom HIGH pixels that do not
fill a whole LOW pixel are cropped first.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
from PIL import Image

from .options import Boundary
from .polyphase import AxisTaps, apply_general

__all__ = ["Degradation", "degrade"]


class Degradation(str, Enum):
    """How LOW images are made from HIGH ones."""

    AREA = "area"
    BICUBIC = "bicubic"
    GAUSSIAN = "gaussian"


def degrade(high: np.ndarray, factor: int, method: Degradation | str = "area") -> np.ndarray:
    """Downscale a float (H, W, C) image by an integer factor.

    Returns ``(H // s, W // s, C)``, float64 for float64 input, else float32.

    Examples
    --------
    >>> degrade(np.arange(16.0).reshape(4, 4, 1), 2)[..., 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    method = Degradation(method)
    s = int(factor)
    dtype = np.float64 if high.dtype == np.float64 else np.float32
    low_h, low_w = high.shape[0] // s, high.shape[1] // s
    high = high[:low_h * s, :low_w * s].astype(dtype, copy=False)
    if method is Degradation.AREA:
        blocks = high.reshape(low_h, s, low_w, s, high.shape[2])
        return blocks.mean(axis=(1, 3), dtype=np.float64).astype(dtype)
    if method is Degradation.BICUBIC:
        channels = [np.asarray(Image.fromarray(high[:, :, c].astype(np.float32), mode="F")
                               .resize((low_w, low_h), Image.Resampling.BICUBIC))
                    for c in range(high.shape[2])]
        return np.stack(channels, axis=-1).astype(dtype)
    sigma = s / 2
    pad = int(math.ceil(3 * sigma)) + s
    ext = Boundary.EDGE.extend(high, (pad, pad), (pad, pad))
    out = np.empty((low_h, low_w, high.shape[2]), dtype)
    return apply_general(ext, _gaussian_taps(low_h, s, sigma, pad),
                         _gaussian_taps(low_w, s, sigma, pad), out)


def _gaussian_taps(n_low: int, s: int, sigma: float, pad: int) -> AxisTaps:
    reach = int(math.ceil(3 * sigma))
    centres = s * np.arange(n_low) + (s - 1) / 2
    first = np.floor(centres).astype(np.intp) - reach
    index = first[:, None] + np.arange(2 * reach + 2)
    weights = np.exp(-0.5 * ((index - centres[:, None]) / sigma) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    return AxisTaps(index + pad, weights)
