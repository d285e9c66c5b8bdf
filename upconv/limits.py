"""Limits shared by the file layer and the command line, in a module that imports nothing.

The command line reads its defaults from here, so that ``upconv --help`` does
not load numpy, Pillow or the image code to print them.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_PIXELS"]

#: Default limit on the pixels of an input or output image (16384 x 16384).
DEFAULT_MAX_PIXELS = 2 ** 28
