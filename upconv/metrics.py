"""Image quality measures."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr"]


def psnr(estimate: np.ndarray, reference: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all samples (``inf`` when identical).

    Examples
    --------
    >>> round(psnr(np.full(4, 0.5), np.full(4, 0.6)), 2)
    20.0
    """
    difference = np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)
    mse = float(np.mean(difference * difference))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
