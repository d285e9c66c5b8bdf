"""upconv: image upsampling by interpolation and transposed convolution.

Examples
--------
>>> import numpy as np, upconv
>>> upconv.scale(np.zeros((2, 3), np.float32), 2, method="bilinear").shape
(4, 6)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import BadInputError, FileAccessError, UpconvError  # noqa: E402
from .fit import fit_kernel  # noqa: E402
from .kernels import Kernel, builtin_kernel, conv_matrix  # noqa: E402
from .methods import Method  # noqa: E402
from .options import Boundary  # noqa: E402
from .scaling import output_shape_for, scale  # noqa: E402
from .transpose import transposed_conv  # noqa: E402

__all__ = ["BadInputError", "Boundary", "FileAccessError", "Kernel", "Method", "UpconvError",
           "__version__", "builtin_kernel", "conv_matrix", "fit_kernel", "output_shape_for",
           "scale", "transposed_conv"]
