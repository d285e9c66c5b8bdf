"""upconv: image upsampling by interpolation and transposed convolution.

Examples
--------
>>> import numpy as np, upconv
>>> upconv.scale(np.zeros((2, 3), np.float32), 2, method="bilinear").shape
(4, 6)
"""

from __future__ import annotations

from .errors import UpconvError
from .fit import fit_kernel
from .kernels import Kernel, builtin_kernel, conv_matrix
from .options import Boundary, Method
from .scaling import output_shape_for, scale
from .transpose import transposed_conv

__version__ = "0.1.0"

__all__ = ["Boundary", "Kernel", "Method", "UpconvError", "__version__", "builtin_kernel",
           "conv_matrix", "fit_kernel", "output_shape_for", "scale", "transposed_conv"]
