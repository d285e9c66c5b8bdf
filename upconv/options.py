"""Boundaries (with their scipy and numpy names), and checking a choice against an enum.

The methods are described in :mod:`upconv.methods`.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def window(self, read_rows: Callable[[int, int], np.ndarray], height: int,
               first: int, last: int, cols: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Rows ``[first, last)`` of an image ``height`` rows high extended by this rule
        (``first`` may be negative and ``last`` past ``height``), columns extended by
        ``cols``, reading only the image rows they show: ``read_rows(a, b)`` gives rows
        ``[a, b)``. Equal to the same rows of the whole image extended.

        Examples
        --------
        >>> image = np.arange(5.0).reshape(5, 1, 1)
        >>> Boundary.REFLECT.window(lambda a, b: image[a:b], 5, -2, 2)[:, 0, 0].tolist()
        [1.0, 0.0, 0.0, 1.0]
        >>> Boundary.EDGE.window(lambda a, b: image[a:b], 5, 3, 7)[:, 0, 0].tolist()
        [3.0, 4.0, 4.0, 4.0]
        """
        above, below = max(0, -first), max(0, last - height)
        top, bottom = min(max(0, first), height), max(min(height, last), 0)
        if above:  # a mirror above shows rows 0 .. above - 1
            top, bottom = 0, max(bottom, min(height, above))
        if below:
            top, bottom = min(top, max(0, height - below)), height
        extended = self.extend(read_rows(top, bottom), (above, below), cols)
        start = first - (top - above)  # extended row 0 is image row top - above
        return extended[start:start + last - first]


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
