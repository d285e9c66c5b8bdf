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
    "load_tensors": "checkpoints", "save_tensors": "checkpoints", "audit": "auditing",
    "fix_layers": "auditing", "layer_figures": "layers", "fix_checkerboard": "layers",
    "bilinear_init": "layers", "icnr_init": "layers",
}

__all__ = ["BadInputError", "Boundary", "FileAccessError", "Kernel", "Method", "UpconvError",
           "__version__", "audit", "bilinear_init", "builtin_kernel", "conv_matrix",
           "fit_kernel", "fix_checkerboard", "fix_layers", "icnr_init", "layer_figures",
           "load_tensors", "output_shape_for", "save_tensors", "scale", "transposed_conv"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from .auditing import audit, fix_layers
    from .checkpoints import load_tensors, save_tensors
    from .errors import BadInputError, FileAccessError, UpconvError
    from .fit import fit_kernel
    from .kernels import Kernel, builtin_kernel, conv_matrix
    from .layers import bilinear_init, fix_checkerboard, icnr_init, layer_figures
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
