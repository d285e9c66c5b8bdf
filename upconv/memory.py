"""Giving freed memory back to the system while a big job runs.

glibc's allocator keeps freed blocks of up to a few tens of megabytes in its
heaps for reuse (after a large block is freed, it raises its threshold for
giving blocks their own mapping, up to 32 MB), so a job that frees its input
chunk by chunk while its output grows would not shrink: the freed pages stay
resident. :func:`release_free_memory` asks glibc to return them
(``malloc_trim(0)``), as Dask's workers do to trim unmanaged memory. Elsewhere
(macOS, Windows, musl) it does nothing.

Dask's workers go further: they start with ``MALLOC_TRIM_THRESHOLD_=65536`` in
their environment, and fixing that threshold turns glibc's sliding threshold
off, leaving the mapping threshold at 128 KiB. Every freed block of 128 KiB or
more then goes back to the system at once, and every new one is a fresh
mapping whose pages the kernel faults in and zeroes one 4 KiB page at a time.
:func:`reusing_freed_memory` gives a computation glibc's own defaults back for
as long as it runs (and a top pad that keeps threads' emptied heaps), and
:func:`hold_freed_memory` for as long as a job runs (until
:func:`release_held_memory`).

Arrays too big for any threshold (a Zarr chunk of hundreds of megabytes) are
kept by their users instead, in a :class:`ReusedArrays`, and handed out again
once nothing refers to them.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np

from .libc import libc_function

__all__ = ["ReusedArrays", "hold_freed_memory", "release_free_memory",
           "release_held_memory", "reusing_freed_memory"]


class ReusedArrays:
    """Big byte arrays kept and handed out again once nothing refers to them any more.

    A fresh array of hundreds of megabytes is a new mapping whose pages the
    kernel finds and zeroes as they are first written (on this project's
    benchmark machine, a virtual machine, about half a millisecond a megabyte,
    its host finding them too), before the bytes meant for them are written
    over the zeros. :meth:`get` hands out a view of an array it keeps, one that nothing
    else refers to any more: every view of it, and every object made over it
    (a zarr buffer, a decoded chunk), holds a reference, so while one is alive
    the array is not handed out again, and a new one is made (kept, up to
    ``most``, else not). Requests under ``smallest`` bytes get a new array.

    Examples
    --------
    >>> arrays = ReusedArrays(most=2)
    >>> first = arrays.get(1000)
    >>> second = arrays.get(1000)  # the first is still held
    >>> np.shares_memory(first, second)
    False
    >>> address = first.__array_interface__["data"][0]
    >>> del first
    >>> arrays.get(1000).__array_interface__["data"][0] == address
    True
    >>> big = arrays.get(5000)  # (grows the free one: now 5000 and 1000 bytes are kept)
    >>> del big, second
    >>> small = arrays.get(800)  # the smallest free one big enough
    >>> sorted(array.size for array in arrays._held), small.base.size
    ([1000, 5000], 1000)
    >>> arrays.clear()
    """

    def __init__(self, most: int, smallest: int = 0) -> None:
        self.most = most
        self.smallest = smallest
        self._held: list[np.ndarray] = []
        self._lock = threading.Lock()

    def get(self, size: int) -> np.ndarray:
        """A uint8 array of ``size`` bytes (contents undefined)."""
        if size < self.smallest:
            return np.empty(size, np.uint8)
        with self._lock:
            # free: referred to only by the list and by getrefcount's argument
            free = [index for index in range(len(self._held))
                    if sys.getrefcount(self._held[index]) == 2]
            if free:  # the smallest that is big enough, else the biggest, grown
                fits = [index for index in free if self._held[index].size >= size]
                index = (min(fits, key=lambda i: self._held[i].size) if fits else
                         max(free, key=lambda i: self._held[i].size))
                if self._held[index].size < size:
                    self._held[index] = np.empty(size, np.uint8)
                return self._held[index][:size]
            data = np.empty(size, np.uint8)
            if len(self._held) < self.most:
                self._held.append(data)
            return data[:size]

    def __len__(self) -> int:
        """How many arrays are kept."""
        return len(self._held)

    def clear(self) -> None:
        """Let go of the arrays kept (a job's last step)."""
        with self._lock:
            self._held.clear()


def _malloc_trim():
    return libc_function("malloc_trim", (ctypes.c_size_t,))


def release_free_memory() -> None:
    """Return the allocator's free pages to the system, where it can (glibc).

    Examples
    --------
    >>> release_free_memory()  # nothing to see: the resident size may drop
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# mallopt(3) parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's own limits for its sliding thresholds on 64-bit machines: blocks of up to
#: 32 MiB are kept for reuse, and up to twice that is kept free at a heap's top.
_REUSE_MMAP_THRESHOLD, _REUSE_TRIM_THRESHOLD = 32 << 20, 64 << 20
#: The padding asked for when a heap grows, and kept when it shrinks (so that a thread's
#: heap left empty is kept, not unmapped, when the heap before it has less free than
#: this at its end). 16 MiB: in ``bench/bench_zarr.py``'s raw job on 1 worker, 46,000
#: page faults against 275,000 to 665,000 before (34,000 with 64 MiB, a whole heap); but
#: kept free at each arena's top, 64 MiB took a zstd job's workers past 1 GB (1060 MB at
#: worst in that benchmark; 16 MiB: 964 MB).
_REUSE_TOP_PAD = 16 << 20
_GLIBC_DEFAULT_THRESHOLD = _GLIBC_DEFAULT_TOP_PAD = 128 << 10
_INT_MAX = 2**31 - 1
_reuse_lock = threading.Lock()
_reuse_users = 0


def _mallopt():
    if _malloc_trim() is None:  # (glibc's, then)
        return None
    return libc_function("mallopt", (ctypes.c_int, ctypes.c_int))


@functools.lru_cache(maxsize=1)
def _startup_environ() -> dict[str, str]:
    """The environment this process was started with, which is what glibc read: not
    ``os.environ``, which the process may have changed since (Dask's ``LocalCluster``
    puts its workers' ``MALLOC_TRIM_THRESHOLD_`` into its own)."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    found = {}
    for entry in entries:
        name, equals, value = entry.partition(b"=")
        if equals:
            found[os.fsdecode(name)] = os.fsdecode(value)
    return found


def fixed_thresholds(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """The allocator thresholds this process was started with, (mapping, trimming) in
    bytes, when its environment fixes them: glibc stops sliding them once any of
    ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_`` and
    ``MALLOC_MMAP_MAX_`` is set, or its ``GLIBC_TUNABLES`` form (which glibc takes over
    the variable). None when glibc slides them itself. ``environ`` defaults to the
    environment at start-up.

    Examples
    --------
    >>> fixed_thresholds({"MALLOC_TRIM_THRESHOLD_": "65536"})
    (131072, 65536)
    >>> fixed_thresholds({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"})
    (1048576, 131072)
    >>> fixed_thresholds({"MALLOC_TRIM_THRESHOLD_": "1",
    ...                   "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=2"})
    (131072, 2)
    >>> fixed_thresholds({"MALLOC_TOP_PAD_": "0"})  # (glibc's defaults, fixed)
    (131072, 131072)
    >>> fixed_thresholds({}) is None
    True
    """
    settings = _malloc_settings(_startup_environ() if environ is None else environ)
    values = {}
    for name, value in settings.items():
        try:
            values[name] = int(value, 0)
        except ValueError:  # (glibc ignores what it cannot read; so does this)
            if name in ("trim_threshold", "mmap_threshold"):
                return None
    if not values:
        return None
    if not all(0 <= values[name] <= _INT_MAX for name in values
               if name in ("trim_threshold", "mmap_threshold")):
        return None  # (no value mallopt could set back)
    return (values.get("mmap_threshold", _GLIBC_DEFAULT_THRESHOLD),
            values.get("trim_threshold", _GLIBC_DEFAULT_THRESHOLD))


#: The allocator settings whose being set at start-up turns glibc's sliding thresholds off.
_FIXING_SETTINGS = ("trim_threshold", "mmap_threshold", "top_pad", "mmap_max")


def _malloc_settings(environ: dict[str, str]) -> dict[str, str]:
    """The settings of :data:`_FIXING_SETTINGS` that ``environ`` gives glibc, by name: a
    ``GLIBC_TUNABLES`` entry (``glibc.malloc.NAME``), else its older variable
    (``MALLOC_NAME_``); glibc takes the tunable over the variable."""
    found: dict[str, str] = {}
    for item in environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = item.partition("=")
        if name.startswith("glibc.malloc.") and name[13:] in _FIXING_SETTINGS:
            found[name[13:]] = value
    for name in _FIXING_SETTINGS:
        variable = f"MALLOC_{name.upper()}_"
        if variable in environ and name not in found:
            found[name] = environ[variable]
    return found


def startup_top_pad(environ: dict[str, str] | None = None) -> int:
    """glibc's ``M_TOP_PAD`` as this process started: the ``glibc.malloc.top_pad`` tunable
    or ``MALLOC_TOP_PAD_`` (glibc takes the tunable over the variable), else glibc's
    default, 128 KiB. ``environ`` defaults to the environment at start-up.

    Examples
    --------
    >>> startup_top_pad({"MALLOC_TOP_PAD_": "0"}), startup_top_pad({})
    (0, 131072)
    """
    value = _malloc_settings(_startup_environ() if environ is None else environ).get("top_pad")
    try:
        pad = int(value, 0) if value is not None else _GLIBC_DEFAULT_TOP_PAD
    except ValueError:
        return _GLIBC_DEFAULT_TOP_PAD
    return pad if 0 <= pad <= _INT_MAX else _GLIBC_DEFAULT_TOP_PAD


@contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """Within: freed blocks of up to 32 MiB are kept for reuse, where the environment
    fixed glibc's thresholds lower (a Dask worker's); after: the fixed thresholds again,
    and the free pages returned (:func:`release_free_memory`).

    A block resampled in bands allocates the same temporaries, a few megabytes
    each, band after band. With Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` each
    was a fresh mapping: 750,000 page faults per worker, a fifth of its time
    clearing pages, in ``bench/bench_zarr.py``. Inside, glibc keeps them as it
    does by default (its sliding thresholds reach 32 MiB and 64 MiB). The
    thresholds are process-wide, so they are set when the first thread enters
    and put back when the last leaves. Where the thresholds are not fixed
    (glibc slides them itself) or the allocator is not glibc's, nothing is
    changed.

    The top pad (``M_TOP_PAD``) is raised to 16 MiB within as well. A thread
    other than the main one allocates from heaps of at most 64 MiB (its own,
    while a process has few threads), and glibc unmaps such a heap as soon as
    it is empty whatever the trim
    threshold, unless the heap before it lacks the top pad's room: a task's
    temporaries, more than one heap's worth, made a new heap and lost it again
    and again (each time its pages faulted in and zeroed anew). A pad of
    16 MiB keeps most of them (:data:`_REUSE_TOP_PAD`).

    Examples
    --------
    >>> with reusing_freed_memory():
    ...     total = sum(len(bytearray(1 << 20)) for _ in range(4))
    >>> total
    4194304
    """
    global _reuse_users
    fixed = fixed_thresholds()
    mallopt = _mallopt() if fixed is not None else None
    if mallopt is None:
        yield
        return
    with _reuse_lock:
        if _reuse_users == 0:
            mallopt(_M_MMAP_THRESHOLD, _REUSE_MMAP_THRESHOLD)
            mallopt(_M_TRIM_THRESHOLD, _REUSE_TRIM_THRESHOLD)
            mallopt(_M_TOP_PAD, _REUSE_TOP_PAD)
        _reuse_users += 1
    try:
        yield
    finally:
        with _reuse_lock:
            _reuse_users -= 1
            if _reuse_users == 0:
                # glibc refuses a mapping threshold above its limit (as it ignored it at
                # start-up): its default, fixed, then
                if not mallopt(_M_MMAP_THRESHOLD, fixed[0]):
                    mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
                mallopt(_M_TRIM_THRESHOLD, fixed[1])
                mallopt(_M_TOP_PAD, startup_top_pad())
                release_free_memory()


#: The :func:`reusing_freed_memory` context held by :func:`hold_freed_memory`, if any.
_held: AbstractContextManager[None] | None = None
_hold_lock = threading.Lock()


def hold_freed_memory() -> None:
    """Enter :func:`reusing_freed_memory` until :func:`release_held_memory` (once, however
    often it is called): for a job whose tasks, one after another on the same worker,
    allocate the same temporaries.

    Left at each task's end, the thresholds would be put back and the free pages
    returned, to be faulted in and zeroed again by the next task; a job's tasks
    keep them, as its reused buffers are kept, until the job's last step. After
    it, the free pages at the top of a thread's heap stay resident until that
    thread frees memory again (``malloc_trim`` returns those of the main heap
    and of the free lists, not those): at most a heap, 64 MiB, per thread.

    Examples
    --------
    >>> hold_freed_memory()
    >>> hold_freed_memory()  # (held already)
    >>> release_held_memory()
    """
    global _held
    with _hold_lock:
        if _held is None:
            held = reusing_freed_memory()
            held.__enter__()
            _held = held


def release_held_memory() -> None:
    """Leave what :func:`hold_freed_memory` entered (nothing, if nothing is held): the
    thresholds put back, and the free pages returned (:func:`release_free_memory`).

    Examples
    --------
    >>> release_held_memory()  # (nothing held: nothing done)
    """
    global _held
    with _hold_lock:
        held, _held = _held, None
    if held is not None:
        held.__exit__(None, None, None)

