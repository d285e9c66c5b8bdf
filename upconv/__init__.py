"""upconv: image upsampling by interpolation and transposed convolution.

The public names below are imported on first use (PEP 562), so that
``upconv --version`` and ``--help`` do not pay for numpy and scipy.

Examples
--------
>>> import numpy as np, upconv
>>> upconv.scale(np.zeros((2, 3), np.float32), 2, method="bilinear").shape
(4, 6)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "BadInputError": "errors", "FileAccessError": "errors", "UpconvError": "errors",
    "fit_kernel": "fit", "Kernel": "kernels", "builtin_kernel": "kernels",
    "conv_matrix": "kernels", "Method": "methods", "Boundary": "options",
    "output_shape_for": "scaling", "scale": "scaling", "transposed_conv": "transpose",
}

__all__ = ["BadInputError", "Boundary", "FileAccessError", "Kernel", "Method", "UpconvError",
           "__version__", "builtin_kernel", "conv_matrix", "fit_kernel", "output_shape_for",
           "scale", "transposed_conv"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from .errors import BadInputError, FileAccessError, UpconvError
    from .fit import fit_kernel
    from .kernels import Kernel, builtin_kernel, conv_matrix
    from .methods import Method
    from .options import Boundary
    from .scaling import output_shape_for, scale
    from .transpose import transposed_conv


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'upconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
