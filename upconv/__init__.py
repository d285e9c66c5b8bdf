"""upconv: image upsampling by interpolation and transposed convolution.

Examples
--------
>>> import numpy as np, upconv
>>> upconv.scale(np.zeros((2, 3), np.float32), 2, method="bilinear").shape
(4, 6)
"""

from __future__ import annotations

from .errors import UpconvError
from .options import Boundary, Method
from .scaling import output_shape_for, scale

__version__ = "0.1.0"

__all__ = ["Boundary", "Method", "UpconvError", "__version__", "output_shape_for", "scale"]
