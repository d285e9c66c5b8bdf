"""Giving freed memory back to the system while a big job runs.

glibc's allocator keeps freed blocks of up to a few tens of megabytes in its
heaps for reuse (after a large block is freed, it raises its threshold for
giving blocks their own mapping, up to 32 MB), so a job that frees its input
chunk by chunk while its output grows would not shrink: the freed pages stay
resident. :func:`release_free_memory` asks glibc to return them
(``malloc_trim(0)``), as Dask's workers do to trim unmanaged memory. Elsewhere
(macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["release_free_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> None:
    """Return the allocator's free pages to the system, where it can (glibc).

    Examples
    --------
    >>> release_free_memory()  # nothing to see: the resident size may drop
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
