"""C library functions that Python's ``os`` module does not bind, looked up with ctypes.

glibc's ``malloc_trim`` and ``mallopt`` (:mod:`upconv.memory`) and Linux's
``sync_file_range`` (:mod:`upconv.fileio`): one function each, not worth a
dependency. Looked up once, in the process's own symbols (the C library it
runs on); elsewhere than Linux, or where the C library lacks one (musl has no
``malloc_trim``), there is none and the caller does without.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

__all__ = ["libc_function"]


@functools.cache
def libc_function(name: str, argtypes: tuple[Any, ...], restype: Any = ctypes.c_int
                  ) -> Any | None:
    """The C library's function ``name`` with its argument and result types set, errno
    kept for :func:`ctypes.get_errno`; None where there is none.

    Examples
    --------
    >>> getpid = libc_function("getpid", ())
    >>> import os
    >>> getpid is None or getpid() == os.getpid()
    True
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = list(argtypes), restype
    return function
