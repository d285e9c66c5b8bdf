"""Colour handling around resampling: sRGB transfer function and alpha.

Interpolating gamma-encoded sRGB values darkens fine detail, so
``linear_light`` decodes to linear light first (as ImageMagick
``-colorspace RGB`` and ``vipsthumbnail --linear`` do). Images with alpha are
resampled premultiplied, so fully transparent pixels (whose colour is
meaningless) do not bleed dark fringes into their neighbours.
"""

from __future__ import annotations

import numpy as np

__all__ = ["srgb_to_linear", "linear_to_srgb", "premultiply", "unpremultiply"]


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """The sRGB decoding function (IEC 61966-2-1), odd-extended below 0.

    Examples
    --------
    >>> srgb_to_linear(np.array([0.0, 0.5, 1.0])).round(4)
    array([0.   , 0.214, 1.   ])
    """
    magnitude = np.abs(values)
    linear = np.where(magnitude <= 0.04045, magnitude / 12.92,
                      ((magnitude + 0.055) / 1.055) ** 2.4)
    return (np.sign(values) * linear).astype(values.dtype, copy=False)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """The sRGB encoding function, inverse of :func:`srgb_to_linear`.

    Examples
    --------
    >>> linear_to_srgb(np.array([0.0, 0.214041, 1.0])).round(4)
    array([0. , 0.5, 1. ])
    """
    magnitude = np.abs(values)
    encoded = np.where(magnitude <= 0.0031308, magnitude * 12.92,
                       1.055 * magnitude ** (1 / 2.4) - 0.055)
    return (np.sign(values) * encoded).astype(values.dtype, copy=False)


def premultiply(image: np.ndarray) -> np.ndarray:
    """Multiply the colour channels by the alpha (last) channel; returns a new array."""
    out = image.copy()
    out[..., :-1] *= image[..., -1:]
    return out


#: Alpha below this (half a 16-bit step) counts as fully transparent after
#: resampling: its colour is set to 0 rather than divided by a tiny number.
ALPHA_EPSILON = 0.5 / 65535


def unpremultiply(image: np.ndarray) -> np.ndarray:
    """Clip alpha to [0, 1] and divide colour by it, in place.

    Premultiplied colour is first clipped to [0, alpha]: ringing (bicubic
    overshoot) divided by a small alpha would otherwise blow up into huge
    colours at nearly transparent pixels. Where alpha is below
    :data:`ALPHA_EPSILON` the pixel is transparent and its colour is 0.

    Examples
    --------
    >>> unpremultiply(np.array([[0.25, 0.5], [0.3, 0.0], [0.3, 1.2], [0.01, 0.001]]))
    array([[0.5  , 0.5  ],
           [0.   , 0.   ],
           [0.3  , 1.   ],
           [1.   , 0.001]])
    """
    alpha = image[..., -1:]
    np.clip(alpha, 0, 1, out=alpha)
    colour = image[..., :-1]
    np.clip(colour, 0, alpha, out=colour)
    covered = alpha >= ALPHA_EPSILON
    safe = np.where(covered, alpha, 1)
    image[..., :-1] = np.where(covered, colour / safe, 0)
    return image
