"""Boundaries (with their scipy and numpy names), and checking a choice against an enum.

The methods are described in :mod:`upconv.methods`.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .errors import BadInputError

__all__ = ["Boundary", "MAX_SIDE", "choice"]

#: No output side may be longer than this (2**31 - 1, beyond any image format).
MAX_SIDE = 2 ** 31 - 1


class Boundary(str, Enum):
    """How the image is extended past its border."""

    EDGE = "edge"
    REFLECT = "reflect"
    ZERO = "zero"

    @property
    def scipy_mode(self) -> str:
        """The equivalent ``mode`` of scipy.ndimage on the grid_mode grid."""
        return {"edge": "nearest", "reflect": "reflect", "zero": "grid-constant"}[self.value]

    @property
    def numpy_pad_mode(self) -> str:
        """The equivalent ``mode`` of :func:`numpy.pad`."""
        return {"edge": "edge", "reflect": "symmetric", "zero": "constant"}[self.value]

    def extend(self, image: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]
               ) -> np.ndarray:
        """Extend an (H, W, C) image by ``rows`` = (above, below) and ``cols`` = (left, right).

        Examples
        --------
        >>> Boundary.REFLECT.extend(np.arange(3.0).reshape(1, 3, 1), (0, 0), (2, 1))[0, :, 0]
        array([1., 0., 0., 1., 2., 2.])
        """
        return np.pad(image, (rows, cols, (0, 0)), mode=self.numpy_pad_mode)


def choice(value: object, enum: type[Enum], what: str) -> Enum:
    """``value`` as a member of ``enum``, or an error that lists the valid choices.

    Examples
    --------
    >>> choice("edge", Boundary, "boundary")
    <Boundary.EDGE: 'edge'>
    """
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in enum)  # type: ignore[attr-defined]
        raise BadInputError(f"unknown {what} {value!r}; use one of {valid}") from None
