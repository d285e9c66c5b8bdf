"""Zarr arrays scaled chunk by chunk, on threads or a Dask cluster; local stores or URLs.

``upconv scale in.zarr out.zarr -f 2`` (``pip install 'upconv[dask]'``, which
brings zarr 3 and dask.distributed) scales the array's ``y`` and ``x`` axes
and writes a Zarr store of the input's format (3, or 2). The work is one task
per block of output chunks (:func:`scale_block_task`): it assembles the input
window its outputs need, with the method's halo on each side (the window
:func:`dask.array.map_overlap` would assemble), resamples it as an image of
its own (or, along an axis whose grid has no short period, on the array's
own grid) and writes the chunks. Raw chunk files of a local store are read by
the task itself, a byte range at a time, halo included; compressed chunks are
decoded once more by a first phase of tasks (:func:`block_borders`) that
return only their edges, a halo deep, so that a chunk is decoded twice rather
than by each of its eight neighbours too. Each worker holds one window and a
few bands of output rows at a time whatever order the scheduler picks, and a
task lost with its worker is run again elsewhere, writing the same whole
chunks. Exactness:

- at whole-number factors and for transposed convolutions the half-pixel
  grid is shift-invariant (input ``i + 1`` is output ``o + s``), so a window
  that carries the taps' reach of real samples on each side gives exactly the
  whole array's values; a rational factor ``p/q`` (output ``n p / q`` from
  ``n``) works the same way on windows that start on multiples of ``q``; along
  an axis with no such short period (16001 to 24002) a block is computed on the
  array's own grid, with the whole array's taps read from its window
  (:func:`scale_block` with ``origin``), which gives the same values;
- the cubic B-spline's prefilter reaches everywhere, but its start-up error
  decays as ``0.268**halo``: the halo of :func:`axis_halo` puts it below
  1e-14 of the values' range (float64), well below float32's round-off.

Axes are taken from OME-Zarr metadata (``multiscales`` axes, versions 0.4 on
Zarr 2 and 0.5 on Zarr 3) or from ``--layout`` (``yx``, ``yxc``, ``cyx``,
``tczyx``...): ``y`` and ``x`` are scaled, a channel axis ``c`` is the image's
channels (whole in every block when a transposed-convolution kernel mixes
them), and any other axis is carried. An OME-Zarr output keeps the input's
metadata with its coordinate transformations updated (the half-pixel grid,
or PyTorch's geometry for a padded transpose), and ``--pyramid N`` adds N
levels, each a 2x2 mean of the one above.

Integer arrays are resampled as the values they hold (not as [0, 1] image
samples) and rounded back to their type, clipped to its range; float arrays
keep their type (float16 becomes float32). Nearest copies any type.

Outputs are whole or absent: a local store is written under a temporary name
beside the target and renamed into place when complete; a store in a bucket
is written with its metadata last (a reader sees no array until every chunk
is there), and removed if the job fails.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import os
import re
import shutil
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import direct_writes
from .direct_writes import PAGE, DirectWriter, aligned_band, latest_ticket, wait_for
from .errors import BadInputError, FileAccessError, OptionValueError, UpconvError
from .fileio import is_url, shown
from .memory import hold_freed_memory, release_held_memory
from .methods import METHODS, SPLINE_HALO, Method
from .scaling import Resampling, plan_resampling, resample_band
from .transpose import output_geometry, post_kernel_weights

__all__ = ["is_zarr", "split_zarr_spec", "close_stores", "ZarrSource", "open_zarr", "axis_names",
           "AxisBlocks", "ZarrPlan", "plan_zarr_job", "scale_block", "block_borders",
           "scale_block_task", "run_zarr_job", "JobRunner", "reads_windows",
           "ZarrOutcome"]

#: Letters ``--layout`` takes for a Zarr array's axes (OME-Zarr's names).
AXIS_LETTERS = "tczyx"
#: ``--layout`` names shared with ``.npy`` arrays.
LAYOUT_ALIASES = {"hw": "yx", "hwc": "yxc", "chw": "cyx", "nchw": "tcyx"}
#: The bicubic spline's halo for float64 values: ``0.268**26 < 2e-15``.
SPLINE_HALO_FLOAT64 = 26

_SPEC = re.compile(r"^(?P<store>.*?\.zarr)(?:/+(?P<inner>[^:]+?))?/*(?::(?P<path>.*))?$",
                   re.IGNORECASE)


# --- names and stores ---------------------------------------------------------------------

def split_zarr_spec(spec: str) -> tuple[str, str]:
    """``STORE[:PATH]`` (or ``STORE/PATH``) as the store and the path inside it ("" for the root).

    Examples
    --------
    >>> split_zarr_spec("s3://bucket/cells.zarr:0")
    ('s3://bucket/cells.zarr', '0')
    >>> split_zarr_spec("data/cells.zarr/labels/0")
    ('data/cells.zarr', 'labels/0')
    >>> split_zarr_spec("cells.zarr/")
    ('cells.zarr', '')
    """
    match = _SPEC.match(spec)
    if match is None:
        return spec.rstrip("/"), ""
    inner = "/".join(part for part in (match["inner"], match["path"]) if part)
    return match["store"], inner.strip("/")


def is_zarr(spec: str) -> bool:
    """Whether a command-line path names a Zarr store (``*.zarr``, optionally ``:PATH``), or
    a local folder holding Zarr metadata.

    Examples
    --------
    >>> is_zarr("s3://bucket/cells.zarr:0"), is_zarr("photo.png"), is_zarr("-")
    (True, False, False)
    """
    if spec == "-":
        return False
    if _SPEC.match(spec):
        return True
    return os.path.isdir(spec) and any(
        os.path.exists(os.path.join(spec, name)) for name in ("zarr.json", ".zarray", ".zgroup"))


def _zarr_module() -> Any:
    try:
        import zarr
    except ImportError:
        raise BadInputError("Zarr arrays need the dask extra: pip install 'upconv[dask]'"
                            ) from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise BadInputError(f"Zarr arrays need zarr 3 (Python 3.11 or later), not zarr "
                            f"{zarr.__version__}: pip install 'upconv[dask]'")
    return zarr


def _store(location: str, read_only: bool) -> Any:
    """A zarr store for a local folder or an fsspec URL (with upconv's storage options)."""
    zarr = _zarr_module()
    if is_url(location):
        from .storage import filesystem_options

        options = dict(filesystem_options(location))
        options.setdefault("asynchronous", True)
        try:
            store = zarr.storage.FsspecStore.from_url(location, storage_options=options,
                                                      read_only=read_only)
            _opened.append(store)
            return store
        except ImportError as exc:
            from .storage import _missing_backend, _protocol

            raise _missing_backend(location, _protocol(location), exc) from None
    from .zarr_local import LocalStore

    return LocalStore(os.path.abspath(location), read_only=read_only)


#: Stores opened on object stores in this process, whose sessions :func:`close_stores` ends.
_opened: list[Any] = []


def close_stores() -> None:
    """End the HTTP sessions of the object-store filesystems this process opened for Zarr
    (they live on zarr's event loop, which does not close them itself): s3fs's client,
    adlfs's service client, gcsfs's session. Their own finalizers, which would run at
    the interpreter's exit with no loop and fail with a traceback, are then detached,
    and the filesystems dropped from fsspec's cache of instances, so that a later
    command in this process makes new ones rather than reusing closed sessions."""
    if not _opened:
        return
    from zarr.core.sync import sync

    from .storage import forget_finalizers

    seen = set()
    while _opened:
        fs = getattr(_opened.pop(), "fs", None)
        if fs is None or id(fs) in seen:
            continue
        seen.add(id(fs))
        for closing in _session_closers(fs):
            try:
                sync(closing())
            except Exception:  # a session that is gone already
                pass
        forget_finalizers(fs)
        cache = getattr(type(fs), "_cache", {})  # fsspec's instances: never handed out again
        for token in [token for token, made in list(cache.items()) if made is fs]:
            cache.pop(token, None)


def _session_closers(fs: Any) -> list[Callable[[], Any]]:
    """What closes a filesystem's HTTP sessions (coroutine functions), and forgets them."""
    closers = []
    client = getattr(fs, "_s3", None)  # s3fs
    if client is not None:
        fs._s3 = None
        closers.append(functools.partial(client.__aexit__, None, None, None))
    service = getattr(fs, "service_client", None)  # adlfs
    if service is not None and hasattr(service, "close"):
        closers.append(service.close)
    session = getattr(fs, "_session", None)  # gcsfs
    if session is not None and hasattr(session, "close") and not getattr(
            session, "closed", True):
        closers.append(session.close)
    return closers


@dataclass
class ZarrSource:
    """An array chosen in a Zarr store, with what its metadata says about it.

    Attributes
    ----------
    spec : str
        The name given (``STORE[:PATH]``).
    array : zarr.Array
    axes : str
        One letter per axis (``"tczyx"``, ``"yxc"``...).
    group_attributes : dict or None
        The attributes of the OME-Zarr group that holds the array (None without).
    multiscale : dict or None
        That group's ``multiscales`` entry.
    dataset : dict or None
        The array's entry in ``multiscale["datasets"]``.
    ome_version : str or None
        "0.4" (attributes at the top level) or "0.5" (under ``"ome"``).
    """

    spec: str
    array: Any
    axes: str
    group_attributes: dict | None = None
    multiscale: dict | None = None
    dataset: dict | None = None
    ome_version: str | None = None

    @property
    def zarr_format(self) -> int:
        return int(self.array.metadata.zarr_format)


def _multiscales(attributes: dict) -> tuple[list | None, str | None]:
    """A group's ``multiscales`` list and its OME-Zarr version (0.5 keeps them under "ome")."""
    ome = attributes.get("ome")
    if isinstance(ome, dict) and isinstance(ome.get("multiscales"), list):
        return ome["multiscales"], str(ome.get("version", "0.5"))
    scales = attributes.get("multiscales")
    if isinstance(scales, list) and scales:
        return scales, str(scales[0].get("version", "0.4"))
    return None, None


def axis_names(axes: list, name: str) -> str:
    """OME-Zarr ``axes`` (names with types, or plain names) as one letter per axis.

    The channel axis (type ``channel``) is ``c``; the last two space axes are
    ``y`` and ``x`` (whatever their names); a third is ``z``; time is ``t``;
    any other axis is carried and named ``o``.

    Examples
    --------
    >>> axis_names([{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
    ...             {"name": "x", "type": "space"}], "a.zarr")
    'cyx'
    >>> axis_names(["t", "z", "y", "x"], "a.zarr")
    'tzyx'
    """
    entries = [entry if isinstance(entry, dict) else {"name": str(entry)} for entry in axes]
    kinds = []
    for entry in entries:
        kind = entry.get("type")
        name_ = str(entry.get("name", "")).lower()
        if kind is None:
            kind = {"x": "space", "y": "space", "z": "space", "c": "channel",
                    "t": "time"}.get(name_, "other")
        kinds.append(kind)
    space = [i for i, kind in enumerate(kinds) if kind == "space"]
    if len(space) < 2:
        raise BadInputError(f"{shown(name)}: OME-Zarr axes {[e.get('name') for e in entries]} have "
                            "fewer than two space axes to scale")
    letters = ["o"] * len(entries)
    letters[space[-1]], letters[space[-2]] = "x", "y"
    for i in space[:-2]:
        letters[i] = "z"
    for i, kind in enumerate(kinds):
        if kind == "channel":
            letters[i] = "c"
        elif kind == "time":
            letters[i] = "t"
    if letters.count("c") > 1:
        raise BadInputError(f"{shown(name)}: OME-Zarr axes have more than one channel axis")
    return "".join(letters)


def layout_letters(layout: str) -> str:
    """``--layout`` as a letter per axis (``hwc`` and ``chw`` read as ``yxc`` and ``cyx``);
    ValueError if it does not name each axis once with letters of ``tczyx``, y and x
    included.

    Examples
    --------
    >>> layout_letters("CHW"), layout_letters("tczyx")
    ('cyx', 'tczyx')
    """
    axes = LAYOUT_ALIASES.get(layout.lower(), layout.lower())
    if (set(axes) - set(AXIS_LETTERS) or len(set(axes)) != len(axes)
            or "y" not in axes or "x" not in axes):
        raise ValueError(f"name each axis once with letters of {AXIS_LETTERS!r}, including "
                         "y and x (e.g. yx, yxc, cyx, tczyx)")
    return axes


def layout_axes(layout: str | None, shape: tuple[int, ...], name: str) -> str:
    """The axes of an array without OME-Zarr metadata: ``--layout`` (checked against the
    shape), or for 2-D ``yx`` and for 3-D ``yxc``/``cyx`` when one end has 4 or fewer
    entries.

    Examples
    --------
    >>> layout_axes(None, (100, 200, 3), "a.zarr"), layout_axes("chw", (3, 10, 20), "a.zarr")
    ('yxc', 'cyx')
    >>> layout_axes("tczyx", (1, 2, 5, 64, 64), "a.zarr")
    'tczyx'
    """
    if layout is not None:
        try:
            axes = layout_letters(layout)
        except ValueError as exc:
            raise BadInputError(f"--layout {layout}: {exc}") from None
        if len(axes) != len(shape):
            raise BadInputError(f"{shown(name)}: --layout {layout} names {len(axes)} axes, but the "
                                f"array has {len(shape)} (shape {shape})")
        return axes
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3 and shape[2] <= 4:
        return "yxc"
    if len(shape) == 3 and shape[0] <= 4:
        return "cyx"
    raise BadInputError(f"{shown(name)}: cannot tell the axes of an array of shape {shape} without "
                        "OME-Zarr metadata; give --layout (e.g. yxc, cyx, tczyx)")


def open_zarr(spec: str, layout: str | None = None) -> ZarrSource:
    """Open ``STORE[:PATH]`` for reading: an array, or the first (finest) level of an
    OME-Zarr image; axes from OME-Zarr metadata, else ``layout`` (:func:`layout_axes`).

    Raises :class:`~upconv.errors.BadInputError` with one line for a store that is
    missing, a path that names nothing, or a group that holds no image.
    """
    zarr = _zarr_module()
    location, path = split_zarr_spec(spec)
    store = _store(location, read_only=True)
    try:
        node = zarr.open(store=store, path=path, mode="r")
    except FileNotFoundError:
        raise BadInputError(_not_found(spec, location, path)) from None
    except UpconvError:
        raise
    except Exception as exc:
        raise _read_failure(spec, exc) from None
    group_path, dataset_path = path, None
    if isinstance(node, zarr.Group):
        attributes = node.attrs.asdict()
        scales, version = _multiscales(attributes)
        if scales is None:
            # (two levels down: a store of many groups is not walked whole for a message)
            arrays = sorted(name for name, member in node.members(max_depth=2)
                            if isinstance(member, zarr.Array))
            listed = ", ".join(arrays[:8]) or "none"
            raise BadInputError(f"{shown(spec)}: a group without OME-Zarr multiscales; choose "
                                f"an array with STORE:PATH (arrays here: {listed})")
        dataset_path = scales[0]["datasets"][0]["path"]
        array = node[dataset_path]
    else:
        array = node
        group_path, _, dataset_path = path.rpartition("/")
        attributes, scales, version = {}, None, None
        if path:
            try:
                parent = zarr.open_group(store=store, path=group_path, mode="r")
                attributes = parent.attrs.asdict()
                scales, version = _multiscales(attributes)
            except Exception:  # no group above: a plain array
                scales = None
    if scales is not None:
        multiscale = scales[0]
        dataset = next((entry for entry in multiscale.get("datasets", [])
                        if entry.get("path") == dataset_path), None)
        if dataset is not None:
            axes = (axis_names(multiscale["axes"], spec) if multiscale.get("axes")
                    else layout_axes(layout, array.shape, spec))
            if len(axes) != array.ndim:
                raise BadInputError(f"{shown(spec)}: OME-Zarr names {len(axes)} axes for an "
                                    f"array of {array.ndim}")
            if layout is not None and layout_axes(layout, array.shape, spec) != axes:
                raise BadInputError(f"{shown(spec)}: --layout {layout} contradicts the OME-Zarr "
                                    f"axes ({axes}); drop --layout")
            return ZarrSource(spec, array, axes, attributes, multiscale, dataset, version)
    return ZarrSource(spec, array, layout_axes(layout, array.shape, spec))


def _not_found(spec: str, location: str, path: str) -> str:
    if is_url(location):
        from .storage import missing_bucket

        bucket = missing_bucket(location)
        if bucket is not None:
            return f"{shown(spec)}: no such bucket {bucket!r}"
    if not path:
        return f"{shown(spec)}: no Zarr store there"
    return f"{shown(spec)}: no array or group {path!r} in {shown(location)}"


def _read_failure(spec: str, exc: BaseException) -> UpconvError:
    if is_url(spec):
        from .storage import _failure

        return _failure(spec, "read", exc)
    return BadInputError(f"{shown(spec)}: cannot read as Zarr ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})")


# --- the plan: blocks along y and x ---------------------------------------------------------

@dataclass(frozen=True)
class AxisBlocks:
    """How one scaled axis is cut into blocks.

    Block ``j`` owns the outputs ``[bounds[j], bounds[j+1])`` and the inputs of its
    *core*, ``[cores[j], cores[j+1])``, the inputs those outputs map to; it is
    computed from its core plus ``halo`` inputs of each neighbour's core.

    Attributes
    ----------
    n_in, n_out : int
        The axis' input and output lengths.
    bounds, cores : tuple of int
        Output and input block boundaries (``cores[j] = bounds[j] / period_out *
        period_in``, or on a grid without a short period the input where output
        ``bounds[j]`` falls, rounded down; the last ones the axis' lengths).
    halo : int
        Input samples of context on each side (none past the array's ends); at most
        any core's length, so it comes from the next block alone.
    period_in, period_out : int
        The grid's period: ``period_in`` input samples to ``period_out`` outputs.
    chunk : int
        The output's chunks along the axis: every block is a whole number of them
        (the last block: the rest).
    """

    n_in: int
    n_out: int
    bounds: tuple[int, ...]
    cores: tuple[int, ...]
    halo: int
    period_in: int
    period_out: int
    chunk: int

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    def context(self, block: int) -> tuple[int, int]:
        """The halo read before and after ``block``'s core."""
        if self.count == 1:
            return 0, 0
        return (self.halo if block > 0 else 0, self.halo if block < self.count - 1 else 0)

    def outputs(self, block: int) -> tuple[int, int]:
        """The array's outputs ``[start, end)`` that ``block`` owns."""
        return self.bounds[block], self.bounds[block + 1]

    def window(self, block: int) -> tuple[int, int, int, int]:
        """Block ``block``'s input window ``[first, last)`` (core and halo) and the outputs it
        owns as indices of that window's own output ``(start, end)``.

        The window starts on a whole period, so that resampled as an image of its
        own its output ``o`` is the array's output ``first / period_in * period_out + o``.
        (On a grid without a short period, whose one period is the whole axis, those are
        the array's outputs: :meth:`outputs`.)

        Examples
        --------
        >>> blocks = axis_blocks(100, 200, 1, 2, 3, 64)
        >>> blocks.cores, blocks.window(1)
        ((0, 32, 64, 96, 100), (29, 67, 6, 70))
        """
        before, after = self.context(block)
        first, last = self.cores[block] - before, self.cores[block + 1] + after
        base = first // self.period_in * self.period_out
        return first, last, self.bounds[block] - base, self.bounds[block + 1] - base


def axis_blocks(n_in: int, n_out: int, period_in: int, period_out: int, halo: int,
                chunk: int) -> AxisBlocks:
    """Blocks along an axis whose outputs are ``chunk``-long output chunks (several when a
    chunk's core is shorter than the halo; the last block takes the rest).

    ``chunk`` must be a multiple of ``period_out`` (so that each core is whole
    periods of the input), unless the axis is no longer than a chunk (one block),
    or its grid has no short period (:func:`has_short_period`): then any
    ``chunk`` will do, and the blocks are computed on the array's own grid
    (:func:`_general_axis_blocks`).

    Examples
    --------
    >>> blocks = axis_blocks(100, 200, 1, 2, 3, 64)
    >>> blocks.bounds, blocks.halo
    ((0, 64, 128, 192, 200), 3)
    >>> axis_blocks(100, 200, 1, 2, 5, 8).bounds  # cores of 4 < 5: two chunks a block
    (0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 200)
    """
    chunk = max(1, min(chunk, n_out))
    if chunk >= n_out:
        return AxisBlocks(n_in, n_out, (0, n_out), (0, n_in), halo, period_in, period_out,
                          chunk)
    if not has_short_period(n_in, period_in):
        return _general_axis_blocks(n_in, n_out, halo, chunk)
    halo = -(-halo // period_in) * period_in
    if chunk % period_out:
        raise OptionValueError("--chunks", f"{chunk} is not a whole number of the grid's "
                               f"periods ({period_out} outputs for {period_in} inputs); use a "
                               f"multiple of {period_out}, such as "
                               f"{max(1, chunk // period_out) * period_out}")
    core = chunk // period_out * period_in
    size = -(-halo // core) * chunk  # outputs per block: whole chunks, a core >= the halo
    bounds = list(range(0, n_out, size))
    cores = [b // period_out * period_in for b in bounds]
    # The last block takes the rest; it must have inputs of its own, at least a halo's.
    while len(cores) > 1 and (n_in - cores[-1] < halo or bounds[-1] >= n_out):
        del bounds[-1], cores[-1]
    if len(cores) == 1:
        return AxisBlocks(n_in, n_out, (0, n_out), (0, n_in), halo, period_in, period_out,
                          chunk)
    return AxisBlocks(n_in, n_out, tuple(bounds) + (n_out,), tuple(cores) + (n_in,), halo,
                      period_in, period_out, chunk)


#: The longest period of a grid (in inputs) whose blocks are whole periods, resampled as
#: images of their own; blocks along an axis whose grid repeats less often are computed
#: on the array's own grid, and its chunks may be any size.
SHORT_PERIOD = 64


def has_short_period(n_in: int, period_in: int) -> bool:
    """Whether an axis' grid repeats every few inputs (:data:`SHORT_PERIOD` at most), so
    that a block of whole periods, resampled as an image of its own, gives the array's
    outputs (:meth:`ZarrPlan.block_plan`), and chunks of whole periods are not big.

    Examples
    --------
    >>> has_short_period(16000, 2), has_short_period(16001, 16001)
    (True, False)
    >>> has_short_period(64004, 16001)  # (96008 outputs: a period of a quarter of the axis)
    False
    """
    return period_in < n_in and period_in <= SHORT_PERIOD


def _general_axis_blocks(n_in: int, n_out: int, halo: int, chunk: int) -> AxisBlocks:
    """Blocks along an axis whose grid has no short period (16001 inputs to 24002
    outputs): ``chunk``-long output chunks (several a block where the inputs they map to
    are fewer than the halo), each block's core the inputs from where its first output
    falls on the half-pixel grid. A block is computed on the array's own grid (the
    whole array's taps, read from its window: :func:`scale_block` with ``origin``), so
    its window must hold every tap of its outputs: the halo is one more than the
    taps' reach, for the rounding of where an output falls.

    Examples
    --------
    >>> blocks = _general_axis_blocks(97, 146, 3, 40)
    >>> blocks.bounds, blocks.cores, blocks.window(1)
    ((0, 40, 80, 120, 146), (0, 26, 52, 79, 97), (22, 56, 40, 80))
    """
    halo += 1
    ratio = n_in / n_out

    def first_input(output: int) -> int:  # where an output falls, rounded down
        return min(n_in, max(0, math.floor((output + 0.5) * ratio - 0.5)))

    per_block = chunk
    while True:
        bounds = list(range(0, n_out, per_block))
        cores = [0] + [first_input(b) for b in bounds[1:]]
        # The last block takes the rest; it must have inputs of its own, at least a halo's.
        while len(cores) > 1 and n_in - cores[-1] < halo:
            del bounds[-1], cores[-1]
        if all(b - a >= halo for a, b in itertools.pairwise(cores)):
            break
        per_block += chunk
    return AxisBlocks(n_in, n_out, tuple(bounds) + (n_out,), tuple(cores) + (n_in,), halo,
                      n_in, n_out, chunk)


def axis_halo(plan: Resampling, axis: int, dtype: np.dtype) -> int:
    """Input samples of context a block needs on each side along ``axis`` (0 y, 1 x) so
    that its outputs equal the whole array's: the taps' reach plus one, the spline
    prefilter's decay for bicubic, a transposed convolution's kernel and padding,
    and a post-kernel's reach.

    Examples
    --------
    >>> plan = plan_resampling((64, 64, 1), 2, "bilinear")
    >>> axis_halo(plan, 0, np.dtype(np.float32))
    2
    """
    if plan.method is Method.TRANSPOSE:
        assert plan.kernel is not None and plan.geometry is not None
        stride = plan.kernel.stride
        padding = plan.geometry.padding[axis] or 0
        reach = -(-(plan.kernel.shape[axis] + padding) // stride) + 1
        if plan.post is not None:
            reach += -(-post_kernel_weights(plan.post).shape[axis] // stride) + 1
        return reach
    method = METHODS[plan.method.value]
    reach = method.taps // 2 + 1
    if method.prefilter:
        reach += SPLINE_HALO_FLOAT64 if dtype == np.float64 else SPLINE_HALO
    return reach


@dataclass(frozen=True)
class ZarrPlan:
    """A Zarr job settled before any chunk is computed: picklable, sent to the workers.

    Attributes
    ----------
    plan : Resampling
        The whole image plane's plan (``H x W x C``).
    axes : str
        The stored axes, one letter each.
    rows, cols : AxisBlocks
        How ``y`` and ``x`` are cut.
    output_padding : int or None
        A transposed convolution's output padding as given (None: the kernel's own).
    work_dtype : numpy.dtype
        The values' type while resampled.
    out_dtype : numpy.dtype
        The output's stored type.
    """

    plan: Resampling
    axes: str
    rows: AxisBlocks
    cols: AxisBlocks
    output_padding: int | None
    work_dtype: np.dtype
    out_dtype: np.dtype

    @property
    def mixes_channels(self) -> bool:
        """A transposed convolution: its kernel may mix channels or have one per channel,
        so blocks take every channel (interpolation takes each chunk of channels alone)."""
        return self.plan.method is Method.TRANSPOSE

    @property
    def on_the_array_grid(self) -> bool:
        """Whether blocks are computed on the array's own grid (the whole array's taps, read
        from each block's window: :func:`scale_block` with ``origin``), because an axis
        whose grid has no short period is cut into blocks (:func:`_general_axis_blocks`);
        else each block is resampled as an image of its own (:meth:`block_plan`)."""
        return any(blocks.count > 1 and not has_short_period(blocks.n_in, blocks.period_in)
                   for blocks in (self.rows, self.cols))

    def array_plan(self) -> Resampling:
        """The whole array's plan, as blocks on its own grid compute it."""
        halo = SPLINE_HALO_FLOAT64 if self.work_dtype == np.float64 else None
        return replace(self.plan, spline_halo=halo)

    def block_plan(self, shape: tuple[int, int]) -> Resampling:
        """The plan for a block's input window of ``shape``, resampled as an image of its own
        (its first sample on a whole period of the grid)."""
        plan = self.array_plan()
        if plan.method is Method.TRANSPOSE:
            assert plan.kernel is not None and plan.geometry is not None
            geometry = output_geometry(plan.kernel, shape, None if plan.geometry.centred
                                       else plan.geometry.padding, self.output_padding)
            return replace(plan, input_shape=shape, shape=geometry.shape, geometry=geometry)
        out = tuple(blocks.n_out if size == blocks.n_in
                    else size // blocks.period_in * blocks.period_out
                    for size, blocks in zip(shape, (self.rows, self.cols), strict=True))
        # (a window ending at the axis' end: n_in - first is whole periods too)
        return replace(plan, input_shape=shape, shape=out)


def _period(n_in: int, n_out: int) -> tuple[int, int]:
    common = math.gcd(n_in, n_out)
    return n_in // common, n_out // common


def plan_zarr_job(source_shape: tuple[int, ...], dtype: np.dtype, axes: str,
                  chunks: tuple[int, ...], *, method: Method | str, factor=None,
                  size=None, fit: str = "fill", boundary: str | None = None, kernel=None,
                  padding: int | None = None, output_padding: int | None = None,
                  post_kernel=None, out_chunks: tuple[int, int] | None = None) -> ZarrPlan:
    """Settle a Zarr job: the plane's plan, the blocks along y and x, the types.

    ``chunks`` is the input's chunking (one entry per stored axis); the blocks
    along y and x are the output's chunks: ``out_chunks`` (``--chunks``), or
    the input's scaled.

    Examples
    --------
    >>> job = plan_zarr_job((100, 120, 3), np.dtype(np.uint16), "yxc", (50, 40, 3),
    ...                     method="bilinear", factor=(2.0, 2.0))
    >>> job.plan.shape, job.rows.bounds, job.cols.bounds, job.out_dtype
    ((200, 240), (0, 100, 200), (0, 80, 160, 240), dtype('uint16'))
    """
    method = Method(method)
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub" or dtype.kind == "b" and method is not Method.NEAREST:
        raise BadInputError(f"Zarr arrays of {dtype} can only be scaled with --method nearest"
                            if dtype.kind == "b" else
                            f"Zarr arrays must hold numbers, not {dtype}")
    iy, ix = axes.index("y"), axes.index("x")
    channels = source_shape[axes.index("c")] if "c" in axes else 1
    height, width = source_shape[iy], source_shape[ix]
    plan = plan_resampling((height, width, channels), factor, method, boundary,
                           output_shape=size, kernel=kernel, padding=padding,
                           output_padding=output_padding, post_kernel=post_kernel,
                           threads=1, fit=fit)
    if method is Method.NEAREST:
        work = dtype
    elif dtype.kind == "f":
        work = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    else:
        work = np.dtype(np.float32 if dtype.itemsize <= 2 else np.float64)
    out_dtype = dtype if method is Method.NEAREST or dtype.kind != "f" else work
    out_h, out_w = plan.shape
    if method is Method.TRANSPOSE:
        assert plan.kernel is not None
        periods = ((1, plan.kernel.stride),) * 2
    else:
        periods = (_period(height, out_h), _period(width, out_w))
    blocks = []
    for axis, (n_in, n_out, chunk, (p_in, p_out)) in enumerate(
            ((height, out_h, chunks[iy], periods[0]), (width, out_w, chunks[ix], periods[1]))):
        # (by default the input's chunk scaled: in whole periods of the grid where it has
        # short ones, 15 inputs at x1.5 being 7 periods of 2, so chunks of 21 outputs)
        if out_chunks is not None:
            wanted = out_chunks[axis]
        elif has_short_period(n_in, p_in):
            wanted = max(1, chunk // p_in) * p_out
        else:
            wanted = max(1, round(chunk * n_out / n_in))
        blocks.append(axis_blocks(n_in, n_out, p_in, p_out, axis_halo(plan, axis, work),
                                  wanted))
    return ZarrPlan(plan, axes, blocks[0], blocks[1], output_padding, work, out_dtype)


# --- one block ------------------------------------------------------------------------------

#: Output rows computed at a time within a block (bounds the temporaries).
BAND_ROWS = 512


def scale_block(block: np.ndarray, job: ZarrPlan, rows: tuple[int, int],
                cols: tuple[int, int], out: np.ndarray | None = None,
                sink: Callable[[np.ndarray], None] | None = None,
                band_buffer: Callable[[tuple[int, int, int], np.dtype], np.ndarray]
                | None = None, origin: tuple[int, int] | None = None) -> np.ndarray | None:
    """The outputs ``rows`` x ``cols`` (indices of the window's own output, see
    :meth:`AxisBlocks.window`) of a block's input window; or, with ``origin``, the
    array's outputs ``rows`` x ``cols`` from the window whose first sample is the
    array's input ``origin = (row, column)`` (:attr:`ZarrPlan.on_the_array_grid`).

    ``block`` is ``(..., y, x, c)``: any leading axes (carried), the window and
    the channels. Each plane is resampled as an image of its own (with ``origin``, on
    the array's grid, from the window's rows and columns), in bands of
    :data:`BAND_ROWS` output rows, of only the outputs the block owns
    (:func:`~upconv.scaling.resample_band`'s ``columns``); ``out``, if given,
    receives them (C-contiguous, as zarr writes a chunk without a copy) and is
    returned. With ``sink`` instead (a block without leading axes), each band's
    rows are handed to ``sink`` as they are computed, and None is returned;
    ``band_buffer(shape, dtype)``, if given, is where each band is computed (any
    strides), rather than one buffer of its own.

    Examples
    --------
    >>> import upconv
    >>> image = np.random.default_rng(0).random((40, 30, 1))
    >>> job = plan_zarr_job(image.shape, image.dtype, "yxc", (16, 16, 1),
    ...                     method="bilinear", factor=(2.0, 2.0))
    >>> job.rows.window(1), job.cols.window(0)
    ((14, 34, 4, 36), (0, 18, 0, 32))
    >>> out = scale_block(image[14:34, 0:18], job, (4, 36), (0, 32))
    >>> bool((out == upconv.scale(image, 2, "bilinear")[32:64, 0:32]).all())
    True
    """
    height, width = block.shape[-3], block.shape[-2]
    if origin is None:
        plan, x_window = job.block_plan((height, width)), None
        top = 0
    else:
        plan, (top, left) = job.array_plan(), origin
        x_window = (left, left + width)
    (r0, r1), (c0, c1) = rows, cols
    assert 0 <= r0 < r1 <= plan.shape[0] and 0 <= c0 < c1 <= plan.shape[1], (
        rows, cols, plan.shape)
    lead = block.shape[:-3]
    assert sink is None or not lead
    channels = plan.channels if job.mixes_channels else block.shape[-1]
    period = plan.row_period
    band_rows = max(1, BAND_ROWS // period) * period  # bands of whole periods
    shape = lead + (r1 - r0, c1 - c0, channels)
    if out is None and sink is None:
        out = np.empty(shape, job.out_dtype)
    assert out is None or (out.shape == shape and out.dtype == job.out_dtype)
    # Values stored as they are computed (one plane, of the output's type): the engine
    # writes each band straight into a band buffer (small enough for the allocator to
    # reuse), which is copied out or handed to the sink.
    in_place = not lead and job.out_dtype == job.work_dtype and plan.method is not Method.NEAREST
    band_shape = (band_rows, c1 - c0, channels)
    band = (np.empty(band_shape, job.out_dtype) if in_place and band_buffer is None else None)
    for index in np.ndindex(*lead):
        plane = block[index]
        if job.plan.method is not Method.NEAREST:
            plane = plane.astype(job.work_dtype, copy=False)
        for first in range(r0, r1, band_rows):
            last = min(r1, first + band_rows)
            if in_place and band_buffer is not None:
                band = band_buffer(band_shape, job.out_dtype)
            values = resample_band(_rows_from(plane, top), plan, (first, last),
                                   out=None if band is None else band[:last - first],
                                   columns=(c0, c1), x_window=x_window)
            owned = _stored(values, job.out_dtype)
            if sink is not None:
                sink(owned)
            else:
                out[index][first - r0:last - r0] = owned
    return out


def _rows_from(plane: np.ndarray, top: int) -> Callable[[int, int], np.ndarray]:
    """``read_rows(first, last)`` for the engine: rows of an image whose row ``top`` is the
    window ``plane``'s first (the window must hold every row asked)."""
    def read_rows(first: int, last: int) -> np.ndarray:
        assert top <= first <= last <= top + plane.shape[0], (first, last, top, plane.shape)
        return plane[first - top:last - top]

    return read_rows


def _stored(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values as the output's type: integers rounded to nearest and clipped to the type."""
    if dtype.kind in "fb" or values.dtype == dtype:
        return values.astype(dtype, copy=False)
    limits = np.iinfo(dtype)
    return np.clip(np.rint(values), limits.min, limits.max).astype(dtype)


@dataclass
class ZarrOutcome:
    """What a Zarr job wrote."""

    output: str
    shape: tuple[int, ...]
    axes: str
    chunks: tuple[int, ...]
    levels: int
    method: str

    def summary(self) -> str:
        """The summary line: ``out.zarr 32000x32000 (yxc, chunks 4096x4096x3), bicubic``."""
        iy, ix = self.axes.index("y"), self.axes.index("x")
        pyramid = f", {self.levels} levels" if self.levels > 1 else ""
        return (f"{self.output} {self.shape[ix]}x{self.shape[iy]} ({self.axes} "
                f"{'x'.join(map(str, self.shape))}, chunks {'x'.join(map(str, self.chunks))}"
                f"{pyramid}), {self.method}")


def _engine_order(axes: str) -> list[int]:
    """The permutation that takes stored axes to the engine's (carried..., y, x, c)."""
    order = [i for i, letter in enumerate(axes) if letter not in "yxc"]
    order += [axes.index("y"), axes.index("x")]
    return order + ([axes.index("c")] if "c" in axes else [])


def output_shape(job: ZarrPlan, source_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output's shape in the stored axis order."""
    shape = list(source_shape)
    shape[job.axes.index("y")], shape[job.axes.index("x")] = job.plan.shape
    if "c" in job.axes:
        shape[job.axes.index("c")] = job.plan.channels
    return tuple(shape)


def output_chunks(job: ZarrPlan, source_chunks: tuple[int, ...], out_shape: tuple[int, ...],
                  asked: tuple[int, ...] | None) -> tuple[int, ...]:
    """The output's chunks per stored axis: y and x are the blocks' (``--chunks`` Y,X or the
    input's scaled); the other axes ``--chunks`` if it names every axis, else the input's
    (the channels whole when a kernel mixes them)."""
    chunks = []
    for i, letter in enumerate(job.axes):
        if letter == "y":
            chunks.append(job.rows.chunk)
        elif letter == "x":
            chunks.append(job.cols.chunk)
        elif letter == "c" and job.mixes_channels:
            chunks.append(out_shape[i])
        elif asked is not None and len(asked) == len(job.axes):
            chunks.append(asked[i])
        else:
            chunks.append(source_chunks[i])
    return tuple(min(max(1, c), n) for c, n in zip(chunks, out_shape, strict=True))


def _regions(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Every chunk of an array, as slices."""
    counts = [-(-n // c) for n, c in zip(shape, chunks, strict=True)]
    return [tuple(slice(i * c, min((i + 1) * c, n))
                  for i, c, n in zip(index, chunks, shape, strict=True))
            for index in np.ndindex(*counts)]


@dataclass(frozen=True)
class BlockKey:
    """One block of a job: its ``y`` and ``x`` block numbers and, for every other stored
    axis, the slice of the output chunk it writes (the input's same slice; all channels
    when a kernel mixes them)."""

    lead: tuple[slice | None, ...]
    by: int
    bx: int

    def core(self, job: ZarrPlan) -> tuple[slice, ...]:
        """The block's core in the input, in stored axis order."""
        selection = list(self.lead)
        iy, ix = job.axes.index("y"), job.axes.index("x")
        selection[iy] = slice(job.rows.cores[self.by], job.rows.cores[self.by + 1])
        selection[ix] = slice(job.cols.cores[self.bx], job.cols.cores[self.bx + 1])
        if "c" in job.axes and job.mixes_channels:
            selection[job.axes.index("c")] = slice(None)
        return tuple(selection)

    def output(self, job: ZarrPlan, channels: int) -> tuple[slice, ...]:
        """The output region the block writes, in stored axis order."""
        region = list(self.lead)
        iy, ix = job.axes.index("y"), job.axes.index("x")
        region[iy] = slice(job.rows.bounds[self.by], job.rows.bounds[self.by + 1])
        region[ix] = slice(job.cols.bounds[self.bx], job.cols.bounds[self.bx + 1])
        if "c" in job.axes and job.mixes_channels:
            region[job.axes.index("c")] = slice(0, channels)
        return tuple(region)


def _core_selection(job: ZarrPlan, source: Any, key: BlockKey) -> tuple[slice, ...]:
    """A block's core in the input (stored axis order), every slice bounded."""
    return tuple(slice(0, source.shape[i]) if s == slice(None) else s
                 for i, s in enumerate(key.core(job)))


def core_shape(job: ZarrPlan, source: Any, key: BlockKey) -> tuple[int, ...]:
    """The shape of a block's core as the engine takes it: (carried..., y, x, c)."""
    shape = [s.stop - s.start for s in _core_selection(job, source, key)]
    engine = tuple(shape[i] for i in _engine_order(job.axes))
    return engine if "c" in job.axes else engine + (1,)


def read_core(job: ZarrPlan, source: Any, key: BlockKey, out: np.ndarray | None = None
              ) -> np.ndarray:
    """A block's core, as the engine takes it: (carried..., y, x, c); read into ``out``
    (of :func:`core_shape`, any strides: the core's place in a window) if given."""
    selection = _core_selection(job, source, key)
    if out is None:
        out = _reused("core", tuple(s.stop - s.start for s in selection), source.dtype)
        return _read_part(job, source, selection, stored=out)
    return _read_part(job, source, selection, out=out)


def _read_part(job: ZarrPlan, source: Any, selection: tuple[slice, ...],
               out: np.ndarray | None = None, stored: np.ndarray | None = None
               ) -> np.ndarray:
    """``source[selection]`` as the engine takes it, (carried..., y, x, c): read into
    ``out`` (engine order, any strides), or into ``stored`` (stored order), or a new
    array."""
    axes = job.axes
    order = _engine_order(axes)
    if out is not None:  # (the same values seen in stored axis order)
        stored = (out if "c" in axes else out[..., 0]).transpose(np.argsort(order))
    values = read_window(source, selection, (axes.index("y"), axes.index("x")), out=stored)
    values = values.transpose(order)
    return values if "c" in axes else values[..., None]


def _holding_freed_memory(task: Callable[..., Any]) -> Callable[..., Any]:
    """A job's task, run with the allocator's freed memory kept for reuse from the first
    task on a worker to the job's end (:func:`~upconv.memory.hold_freed_memory`; a Dask
    worker's fixed allocator thresholds lifted; :func:`drop_buffers` lets go, as it lets
    go of the buffers the tasks reuse). A process-wide setting: a task run on its own
    leaves it held until :func:`drop_buffers` is called."""

    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> Any:
        hold_freed_memory()
        return task(*args, **kwargs)

    return run


@_holding_freed_memory
def block_borders(job: ZarrPlan, source: Any, key: BlockKey) -> dict[str, np.ndarray]:
    """First phase: a block's core edges, a halo deep, for its neighbours' windows
    (copies: the core itself is not kept). Not asked where a block reads its whole
    window itself (:func:`reads_windows`)."""
    rows, cols = job.rows.halo, job.cols.halo
    core = read_core(job, source, key)
    return {"top": core[..., :rows, :, :].copy(), "bottom": core[..., -rows:, :, :].copy(),
            "left": core[..., :, :cols, :].copy(), "right": core[..., :, -cols:, :].copy()}


@_holding_freed_memory
def scale_block_task(job: ZarrPlan, source: Any, target: Any, key: BlockKey,
                     neighbours: dict[tuple[int, int], dict[str, np.ndarray]] | None) -> int:
    """A block's window assembled, resampled, and its output chunks written to
    ``target``; returns how many chunks it wrote. The window is read whole, core and
    halo, where ``neighbours`` is None (raw chunk files, :func:`reads_windows`: the
    job's only phase); else (the second phase) the block's core is read again and the
    neighbours' edges (``neighbours[(dy, dx)]``, from :func:`block_borders`) put around
    it."""
    *lead, height, width, depth = core_shape(job, source, key)
    (top, bottom), (left, right) = job.rows.context(key.by), job.cols.context(key.bx)
    window = _reused("window", (*lead, top + height + bottom, left + width + right, depth),
                     source.dtype)
    rows = {-1: slice(0, top), 0: slice(top, top + height), 1: slice(top + height, None)}
    cols = {-1: slice(0, left), 0: slice(left, left + width), 1: slice(left + width, None)}
    first_row, last_row, r0, r1 = job.rows.window(key.by)
    first_col, last_col, c0, c1 = job.cols.window(key.bx)
    origin = None
    if job.on_the_array_grid:  # the array's own outputs, from the window at its origin
        origin = (first_row, first_col)
        (r0, r1), (c0, c1) = job.rows.outputs(key.by), job.cols.outputs(key.bx)
    if neighbours is None:
        selection = list(_core_selection(job, source, key))
        selection[job.axes.index("y")] = slice(first_row, last_row)
        selection[job.axes.index("x")] = slice(first_col, last_col)
        _read_part(job, source, tuple(selection), out=window)
        neighbours = {}
    else:  # the core read straight into its place in the window (no copy of its own)
        read_core(job, source, key, out=window[..., rows[0], cols[0], :])
    for (dy, dx), edges in neighbours.items():
        piece = edges["bottom" if dy < 0 else "top"] if dy else edges[
            "right" if dx < 0 else "left"]
        if dy and dx:  # a corner: the end of the neighbour's top or bottom edge
            piece = piece[..., :, -left:, :] if dx < 0 else piece[..., :, :right, :]
        window[..., rows[dy], cols[dx], :] = piece
    channels = job.plan.channels if job.mixes_channels else depth
    region = key.output(job, job.plan.channels)
    streamed = (streamed_chunks(target, region, channels) if job.axes in ("yx", "yxc")
                else None)
    if streamed is not None:  # each band into the chunk files, as it is computed
        with streamed:
            scale_block(window, job, (r0, r1), (c0, c1), sink=streamed.write,
                        band_buffer=streamed.band_buffer, origin=origin)
            return streamed.close()
    values = scale_block(window, job, (r0, r1), (c0, c1), origin=origin, out=_reused(
        "block", (*lead, r1 - r0, c1 - c0, channels), job.out_dtype))
    if "c" not in job.axes:
        values = values[..., 0]
    return write_chunks(target, region, values.transpose(np.argsort(_engine_order(job.axes))))


def write_chunks(target: Any, region: tuple[slice, ...], values: np.ndarray) -> int:
    """``target[region] = values``, a stored chunk at a time, leaving out the chunks that
    hold only the fill value (zero, bit for bit: ``-0.0`` is stored), as zarr does by
    default; returns how many chunks ``region`` covers.

    The target is created with ``write_empty_chunks=True``, so that zarr does not
    compare every chunk with the fill value itself: its comparison allocates a mask as
    big as the chunk, and took a tenth of a job's time in ``bench/bench_zarr.py``.
    """
    if not values.size:
        return 0
    if not all(r.start % c == 0 for r, c in zip(region, target.chunks, strict=True)):
        target[region] = values  # (blocks start on chunks: not for upconv's own jobs)
        return _chunk_count(values.shape, target.chunks)
    fill = target.fill_value
    # zarr's in-memory store keeps the arrays it is given: not the reused buffers, then
    keeps_arrays = isinstance(target.store, _zarr_module().storage.MemoryStore)
    for piece in _regions(values.shape, target.chunks):
        part = values[piece]
        if _only_fill(part, fill):
            continue  # absent: read back as the fill value
        start = [r.start + p.start for r, p in zip(region, piece, strict=True)]
        if part.shape != tuple(target.chunks) and all(
                first + size <= end for first, size, end in
                zip(start, target.chunks, target.shape, strict=True)):
            # An edge chunk (the array's last along some axis), into an array of whole
            # chunks (:func:`whole_chunks`): sent whole, padded with the fill value as
            # zarr pads it, so that zarr need not make a new chunk-sized array (a fresh
            # allocation) to merge it into.
            whole = _reused("edge", tuple(target.chunks), part.dtype)
            whole[...] = np.asarray(fill if fill is not None else 0, part.dtype)
            whole[tuple(slice(0, n) for n in part.shape)] = part
            part = whole
        target[tuple(slice(first, first + n)
                     for first, n in zip(start, part.shape, strict=True))] = (
            part.copy() if keeps_arrays else part)
    return _chunk_count(values.shape, target.chunks)


def _only_fill(values: np.ndarray, fill: Any) -> bool:
    """Whether a chunk's values are all the fill value when that is zero, bit for bit
    (``-0.0`` is not); False for any other fill value (every chunk is then stored)."""
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(values.dtype.itemsize)
    if bits is None or fill is None or np.asarray(fill, values.dtype).view(bits).any():
        return False
    words = values.view(bits)
    if not words.flags.c_contiguous:
        return not words.any()
    # a piece at a time: a chunk that is not empty is told by its first values, rather
    # than by a pass over all of them
    words = words.reshape(-1)
    return not any(words[start:start + _FILL_TEST_WORDS].any()
                   for start in range(0, words.size, _FILL_TEST_WORDS))


#: Values tested at a time by :func:`_only_fill`.
_FILL_TEST_WORDS = 1 << 16


def streamed_chunks(target: Any, region: tuple[slice, ...], channels: int
                    ) -> StreamedChunks | None:
    """A :class:`StreamedChunks` for ``target[region]``, or None where its chunks cannot
    be written a band of rows at a time (they are then written by
    :func:`write_chunks`).

    Streamed: a Zarr 3 array of upconv's local store (:mod:`upconv.zarr_local`), or
    of a store in S3 or Azure (each chunk an object sent in parts:
    :class:`upconv.storage.StreamedObject`), whose chunks are stored raw (the ``bytes``
    codec, little-endian as this machine is), or raw and then zstd-compressed (zarr's
    default codecs), its axes
    ``y, x`` or ``y, x, c`` with every channel in each chunk, and ``region``
    starting on a chunk; ``channels`` is the values' channel count (1 for ``y, x``).
    """
    from .zarr_zstd import zstd_library

    files = _chunk_files(target, "pwritev") or _chunk_objects(target)
    if files is None or len(target.shape) not in (2, 3) or len(files[0]) > 1:
        return None
    zstd = files[0][0] if files[0] else None
    if zstd is not None and not (isinstance(zstd, _zarr_module().codecs.ZstdCodec)
                                 and zstd_library() is not None):
        return None
    if len(target.shape) == 3 and not (target.chunks[2] == target.shape[2] == channels):
        return None
    if any(r.start % c for r, c in zip(region, target.chunks, strict=True)):
        return None
    return StreamedChunks(target, region, zstd, files[1])


class StreamedChunks:
    """The output chunks of a block's region, written a band of rows at a time as the
    rows are computed (:func:`streamed_chunks` says where this can be).

    Each band's rows that fall in a chunk go straight into the chunk's file
    (:class:`upconv.zarr_local.ChunkFile`, renamed into place when its last row
    is in), or through zstd into it (:class:`upconv.zarr_zstd.FrameWriter`),
    while they are still in the CPU's cache; no buffer as big as the block is
    filled first. A chunk of :data:`upconv.direct_writes.SMALLEST` bytes or more
    (before compression) is written around the page cache: raw rows from the
    band buffer they were computed in (:meth:`band_buffer`, two buffers taken in
    turn, each lent to the writer thread until its rows are written), compressed
    ones from the frame written straight into the file's own buffers. A raw file is the
    bytes zarr writes for the same chunk, and a compressed one a zstd frame of
    the same level and checksum, which zarr reads as the same values (zstd's
    streaming compressor may pick other matches than its one-shot function, so
    the bytes can differ). Edge chunks are padded with the fill value, and a
    chunk of nothing but the fill value (zero, bit for bit) is not stored, as
    :func:`write_chunks` does. :meth:`close` checks that every
    row came; leaving the ``with`` block removes whatever chunk is unfinished.

    Examples
    --------
    >>> import tempfile, zarr
    >>> from upconv.zarr_local import LocalStore
    >>> array = zarr.create_array(LocalStore(tempfile.mkdtemp()), shape=(5, 6),
    ...                           chunks=(4, 4), dtype="f4", compressors=None)
    >>> values = np.arange(30, dtype="f4").reshape(5, 6)
    >>> with streamed_chunks(whole_chunks(array), (slice(0, 5), slice(0, 6)), 1) as chunks:
    ...     chunks.write(values[:3, :, None])
    ...     chunks.write(values[3:, :, None])
    ...     written = chunks.close()
    >>> written, bool((array[...] == values).all())
    (4, True)
    """

    def __init__(self, target: Any, region: tuple[slice, ...], zstd: Any,
                 chunk_file: Callable[[tuple[int, ...]], Any]) -> None:
        self.target, self.zstd, self.chunk_file = target, zstd, chunk_file
        (self.top, self.bottom), (self.left, self.right) = (
            (r.start, r.stop) for r in region[:2])
        self.chunk_rows, self.chunk_cols = target.chunks[:2]
        self.chunk_channels = target.chunks[2] if len(target.chunks) == 3 else 1
        self.row = self.top  # the next row to come
        self.dtype = np.dtype(target.dtype)
        fill = target.fill_value
        self.fill = np.asarray(fill if fill is not None else 0, self.dtype)
        row_values = self.chunk_cols * self.chunk_channels
        # (page aligned: written around the page cache from where it is)
        self.fill_row = aligned_band(row_values * self.dtype.itemsize).view(self.dtype)
        self.fill_row[...] = self.fill
        self.open: dict[int, _ChunkOnItsWay] = {}  # by chunk column
        self.bands_lent = 0
        self.band_tickets = [0, 0]  # the writes of each band buffer's rows (wait_for)

    def band_buffer(self, shape: tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
        """Where to compute the next band (``shape``, of ``dtype``: the region's columns):
        each row starts on a page (and the band buffer used before the last is free
        again: its rows are written), so that its rows are written around the page cache
        from where they are, without a copy. Rows of a whole number of pages follow each
        other, and a chunk's rows are then written as one piece."""
        which = self.bands_lent % 2
        self.bands_lent += 1
        wait_for(self.band_tickets[which])
        rows, width, channels = shape
        pixel = channels * np.dtype(dtype).itemsize
        stride = -(-width * pixel // PAGE) * PAGE
        raw = _reused(f"streamed band {which}", (rows * stride + PAGE,), np.uint8)
        offset = -raw.ctypes.data % PAGE
        return np.ndarray(shape, dtype, buffer=raw, offset=offset,
                          strides=(stride, pixel, np.dtype(dtype).itemsize))

    def write(self, rows: np.ndarray) -> None:
        """The region's next rows, ``(n, width, channels)`` (any strides)."""
        assert rows.shape[1] == self.right - self.left, (rows.shape, self.right - self.left)
        assert self.row + len(rows) <= self.bottom, (self.row, len(rows), self.bottom)
        done = 0
        while done < len(rows):
            chunk_top = self.row - (self.row - self.top) % self.chunk_rows
            last = min(chunk_top + self.chunk_rows, self.bottom, self.row + len(rows) - done)
            part = rows[done:done + last - self.row]
            for first in range(self.left, self.right, self.chunk_cols):
                self._write_part(first, part[:, first - self.left:first - self.left
                                             + self.chunk_cols])
            done += last - self.row
            self.row = last
            if last == self.bottom or (last - self.top) % self.chunk_rows == 0:
                self._finish_row_of_chunks(chunk_top)
        if self.zstd is None:  # (compressed rows are read before this returns)
            self.band_tickets[(self.bands_lent - 1) % 2] = latest_ticket()

    def _write_part(self, first: int, part: np.ndarray) -> None:
        column = first // self.chunk_cols
        chunk = self.open.get(column)
        if chunk is None:
            path = self.chunk_file((self.row // self.chunk_rows, column)
                                   + ((0,) if len(self.target.chunks) == 3 else ()))
            size = self.chunk_rows * self.chunk_cols * self.chunk_channels * self.dtype.itemsize
            chunk = self.open[column] = _ChunkOnItsWay(path, size, self.zstd, self.fill_row)
        if not chunk.opened and _only_fill(part, self.fill):
            chunk.skip_fill_rows(len(part))
            return
        missing = self.chunk_cols - part.shape[1]
        rows = _row_pieces(part, joined=not missing)
        if missing:
            tail = memoryview(self.fill_row[:missing * self.chunk_channels]).cast("B")
            rows = [piece for row in rows for piece in (row, tail)]
        chunk.write(rows)

    def _finish_row_of_chunks(self, chunk_top: int) -> None:
        missing = chunk_top + self.chunk_rows - self.row  # (the array's last chunks)
        for chunk in self.open.values():
            if missing and chunk.opened:
                chunk.write([memoryview(self.fill_row)] * missing)
            chunk.finish()
        self.open.clear()

    def close(self) -> int:
        """Check that every row came; returns how many chunks the region covers."""
        assert self.row == self.bottom and not self.open, (self.row, self.bottom)
        return _chunk_count((self.bottom - self.top, self.right - self.left),
                            self.target.chunks[:2])

    def __enter__(self) -> StreamedChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        for chunk in self.open.values():
            chunk.discard()
        self.open.clear()


def _row_pieces(rows: np.ndarray, joined: bool = False) -> list[memoryview]:
    """Each row of ``rows`` (``(n, width, channels)``, any strides) as a byte view of its
    own (a copy only where a row is not contiguous): slices of one view over the rows'
    span, as a band's thousands of rows are cheaper so than as arrays one at a time.
    With ``joined``, rows that follow each other in memory are one piece (one call to
    zstd, one to the kernel).

    Examples
    --------
    >>> band = np.zeros((3, 4, 2), np.float32)
    >>> [len(piece) for piece in _row_pieces(band)], len(_row_pieces(band, joined=True)[0])
    ([32, 32, 32], 96)
    """
    n, width, channels = rows.shape
    item = rows.dtype.itemsize
    length = width * channels * item
    if not n or not length:
        return []
    if rows.strides[1:] != (channels * item, item) or rows.strides[0] < length:
        return [memoryview(np.ascontiguousarray(row)).cast("B") for row in rows]
    stride = rows.strides[0]
    span = np.lib.stride_tricks.as_strided(rows.view(np.uint8), shape=((n - 1) * stride
                                                                      + length,), strides=(1,))
    view = memoryview(span)
    if joined and stride == length:
        return [view]
    return [view[start:start + length] for start in range(0, n * stride, stride)]


class _ChunkOnItsWay:
    """A chunk of :class:`StreamedChunks` being written: its file, and its zstd frame
    when it is compressed, both made only once a value other than the fill value comes
    (until then the rows of nothing but the fill value are only counted, and written
    first then): a chunk of nothing but the fill value touches no file."""

    def __init__(self, path: Any, size: int, zstd: Any, fill_row: np.ndarray) -> None:
        self.path, self.size, self.zstd, self.fill_row = path, size, zstd, fill_row
        self.file: Any = None
        self.frame: Any = None
        self.fill_rows = 0

    @property
    def opened(self) -> bool:
        return self.file is not None

    def skip_fill_rows(self, count: int) -> None:
        """``count`` rows of nothing but the fill value, before any other value."""
        assert not self.opened
        self.fill_rows += count

    def write(self, pieces: list) -> None:
        """Write rows (pieces the caller leaves unchanged until written: see
        :meth:`StreamedChunks.band_buffer`)."""
        if self.file is None:
            self._open()
        if self.frame is None:
            self.file.write(pieces, kept=True)
        else:
            self.frame.write(pieces)

    def _open(self) -> None:
        from .storage import StreamedObject
        from .zarr_local import ChunkFile
        from .zarr_zstd import FrameWriter

        if isinstance(self.path, str):  # an object in a bucket, sent a part at a time
            self.file = StreamedObject(self.path)
        else:  # (compressed: the size is not known, so no space is set aside for it)
            self.file = ChunkFile(self.path, self.size if self.zstd is None else 0,
                                  direct=self.size >= direct_writes.SMALLEST)
        try:
            if self.zstd is not None:  # (compressed into the file's own buffers, if any)
                writer = self.file.writer
                self.frame = FrameWriter(
                    self.size, self.zstd.level, self.zstd.checksum,
                    **({"into": writer} if isinstance(writer, DirectWriter)
                       else {"sink": self.file.write}))
            if self.fill_rows:
                self.write([memoryview(self.fill_row)] * self.fill_rows)
        except BaseException:
            self.discard()
            raise

    def finish(self) -> None:
        """Rename the file into place; nothing for a chunk of nothing but the fill value
        (absent, as zarr leaves it)."""
        if self.file is None:
            return
        if self.frame is not None:
            self.frame.finish()
        self.file.commit()

    def discard(self) -> None:
        if self.frame is not None:
            self.frame.close()
        if self.file is not None:
            self.file.discard()


def whole_chunks(array: Any) -> Any:
    """The same stored array seen with its shape rounded up to whole chunks, for writing
    its edge chunks whole (see :func:`write_chunks`); its metadata is not changed.

    Examples
    --------
    >>> import zarr
    >>> array = zarr.create_array(store={}, shape=(5, 7), chunks=(4, 4), dtype="f4")
    >>> whole_chunks(array).shape, array.shape
    ((8, 8), (5, 7))
    """
    zarr = _zarr_module()
    shape = tuple(-(-n // c) * c for n, c in zip(array.shape, array.chunks, strict=True))
    if shape == array.shape:
        return array
    return zarr.Array(zarr.AsyncArray(metadata=array.metadata.update_shape(shape),
                                      store_path=array.store_path,
                                      config=array.async_array.config))


#: Each thread's reused buffers (:func:`_reused`), by thread id; emptied at a job's end.
_buffers: dict[int, dict[str, np.ndarray]] = {}


def _reused(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A buffer this thread reuses from task to task (contents undefined).

    A task's window and output block are hundreds of megabytes, the same sizes
    every time; glibc gives allocations that big (and any big one in a thread
    other than the main one) fresh pages, which the kernel zeroes on first
    touch: reusing them halved a block's time in ``bench/bench_zarr.py``.
    """
    cache = _buffers.setdefault(threading.get_ident(), {})
    size = math.prod(shape) * np.dtype(dtype).itemsize
    held = cache.get(name)
    if held is None or held.nbytes < size:
        held = cache[name] = np.empty(size, np.uint8)
    return held[:size].view(dtype).reshape(shape)


def drop_buffers() -> None:
    """Free every thread's reused buffers, those kept for reading chunk files and for
    the zstd codec's results (:mod:`upconv.zarr_zstd`), and give the allocator's
    thresholds back (a job's last step, here and on each worker)."""
    _buffers.clear()
    from .zarr_local import drop_read_buffers
    from .zarr_zstd import drop_codec_buffers

    drop_read_buffers()
    drop_codec_buffers()
    direct_writes.drop_buffers()
    release_held_memory()


def _block_keys(job: ZarrPlan, shape: tuple[int, ...], chunks: tuple[int, ...]
                ) -> list[list[list[BlockKey]]]:
    """Every block, as rows of blocks (``[lead][by][bx]``): the other axes' output chunks
    (channels whole when a kernel mixes them), then the y and x blocks."""
    leads = []
    counts = []
    for i, letter in enumerate(job.axes):
        if letter in "yx" or (letter == "c" and job.mixes_channels):
            counts.append(1)
        else:
            counts.append(-(-shape[i] // chunks[i]))
    for index in np.ndindex(*counts):
        lead = tuple(None if letter in "yx" else (
            slice(None) if letter == "c" and job.mixes_channels else
            slice(n * chunks[i], min((n + 1) * chunks[i], shape[i])))
            for i, (letter, n) in enumerate(zip(job.axes, index, strict=True)))
        leads.append([[BlockKey(lead, by, bx) for bx in range(job.cols.count)]
                      for by in range(job.rows.count)])
    return leads


def read_window(array: Any, selection: tuple[slice, ...], axes: tuple[int, ...],
                out: np.ndarray | None = None) -> np.ndarray:
    """``array[selection]``, read one stored chunk along ``axes`` at a time, into ``out``
    if given (else a new array).

    zarr decodes every chunk a selection touches at once: a window with a halo
    touches nine 2048x2048 chunks, and reading it whole held 650 MB of decoded
    and compressed chunks at a time. Piece by piece, one chunk's worth is held,
    decoded straight into ``out``.
    """
    from zarr.core.buffer import default_buffer_prototype

    shape = tuple(s.stop - s.start for s in selection)
    if out is None:
        out = np.empty(shape, array.dtype)
    wrap = default_buffer_prototype().nd_buffer.from_numpy_array
    chunk_file = raw_chunk_files(array)
    if chunk_file is not None:  # (read a chunk file at a time: cut along every axis)
        from .zarr_local import read_raw_part

        axes = tuple(range(len(selection)))
    edges = []
    for axis in axes:
        size, first, last = array.chunks[axis], selection[axis].start, selection[axis].stop
        cuts = sorted({first, last, *range((first // size + 1) * size, last, size)})
        edges.append(list(zip(cuts[:-1], cuts[1:], strict=True)))
    for pieces in itertools.product(*edges):
        source = list(selection)
        target = [slice(None)] * len(selection)
        for axis, (first, last) in zip(axes, pieces, strict=True):
            source[axis] = slice(first, last)
            target[axis] = slice(first - selection[axis].start, last - selection[axis].start)
        if chunk_file is not None:  # (raw chunk files: read straight into `out`)
            coords = tuple(s.start // c for s, c in zip(source, array.chunks, strict=True))
            local = tuple(slice(s.start - i * c, s.stop - i * c)
                          for s, i, c in zip(source, coords, array.chunks, strict=True))
            if read_raw_part(chunk_file(coords), array.chunks, local, out[tuple(target)],
                             array.fill_value):
                continue
        array.get_basic_selection(tuple(source), out=wrap(out[tuple(target)]))
    return out


def reads_windows(job: ZarrPlan, source: Any) -> bool:
    """Whether each block reads its whole window, halo included, itself (the job's only
    phase): where the input's chunks are raw files upconv reads a byte range at a time
    (:func:`raw_chunk_files`) straight into the window. Not where a block holds every
    channel (a transposed convolution) of an array whose channels are not its last axis
    (``cyx``): the window's rows are then not the files' runs of bytes, and each of its
    pieces would be read through zarr, a whole chunk for a few of its values."""
    if raw_chunk_files(source) is None:
        return False
    return not (job.mixes_channels and "c" in job.axes and job.axes[-1] != "c")


def raw_chunk_files(array: Any) -> Callable[[tuple[int, ...]], Any] | None:
    """Where each chunk of ``array`` lies (its file's path, by chunk coordinates), if its
    chunks are raw files upconv reads itself (:func:`upconv.zarr_local.read_raw_part`):
    a Zarr 3 array of upconv's local store, stored with the ``bytes`` codec alone in this
    machine's byte order; else None (read through zarr)."""
    files = _chunk_files(array, "preadv")
    return files[1] if files is not None and not files[0] else None


def _chunk_files(array: Any, call: str) -> tuple[tuple[Any, ...], Callable[[tuple[int, ...]],
                                                                           Any]] | None:
    """For a Zarr 3 array of upconv's local store whose chunks are first the ``bytes``
    codec in this machine's byte order (little-endian), where ``os`` has ``call``
    (``preadv``, ``pwritev``: not on Windows): the codecs that follow it, and each chunk's
    file path by its chunk coordinates; else None."""
    from .zarr_local import LocalStore

    store = array.store_path.store
    codecs = _raw_first_codecs(array)
    if codecs is None or not isinstance(store, LocalStore) or not hasattr(os, call):
        return None
    chunk_name = _chunk_names(array)
    return codecs, lambda coords: store.root / chunk_name(coords)


def _chunk_objects(array: Any) -> tuple[tuple[Any, ...], Callable[[tuple[int, ...]],
                                                                 str]] | None:
    """As :func:`_chunk_files`, for a Zarr 3 array in a bucket whose objects can be sent a
    part at a time (:func:`upconv.storage.streams_in_parts`), made with the options
    upconv's own requests to its URL use (else those requests could go elsewhere, or
    with other credentials, than zarr's): the codecs after the ``bytes`` codec, and each
    chunk's URL by its chunk coordinates; else None."""
    from .storage import filesystem_options, streams_in_parts

    store = array.store_path.store
    codecs = _raw_first_codecs(array)
    if codecs is None or not isinstance(store, _zarr_module().storage.FsspecStore):
        return None
    root = store.fs.unstrip_protocol(store.path.rstrip("/"))
    if not streams_in_parts(f"{root}/chunk"):
        return None
    ours, theirs = (dict(options) for options in (filesystem_options(root),
                                                  getattr(store.fs, "storage_options", {})))
    for options in (ours, theirs):  # (how to connect may differ: botocore rewrites the
        options.pop("asynchronous", None)  # retries it is given; where and who may not)
        options.pop("config_kwargs", None)
    if ours != theirs:
        return None
    chunk_name = _chunk_names(array)
    return codecs, lambda coords: f"{root}/{chunk_name(coords)}"


def _raw_first_codecs(array: Any) -> tuple[Any, ...] | None:
    """The codecs after the first of a Zarr 3 array whose first is the ``bytes`` codec in
    this machine's byte order (little-endian); else None."""
    zarr = _zarr_module()
    metadata = array.metadata
    if metadata.zarr_format != 3 or sys.byteorder != "little":
        return None
    codecs = metadata.codecs
    if (not codecs or not isinstance(codecs[0], zarr.codecs.BytesCodec)
            or codecs[0].endian not in (None, zarr.codecs.Endian.little)):
        return None
    return tuple(codecs[1:])


def _chunk_names(array: Any) -> Callable[[tuple[int, ...]], str]:
    """Each chunk's key in its store, by its chunk coordinates."""
    metadata, inside = array.metadata, array.store_path.path

    def chunk_name(coords: tuple[int, ...]) -> str:
        key = metadata.encode_chunk_key(coords)
        return f"{inside}/{key}" if inside else key

    return chunk_name


@_holding_freed_memory
def halve_chunk(axes: str, above: Any, target: Any, region: tuple[slice, ...]) -> int:
    """One task of a pyramid level: the chunk ``region`` as the 2x2 mean of the level
    ``above`` (an odd last row or column averaged with itself), rounded back to integers."""
    iy, ix = axes.index("y"), axes.index("x")
    read = list(region)
    for i in (iy, ix):
        read[i] = slice(2 * region[i].start, min(above.shape[i], 2 * region[i].stop))
    values = np.asarray(above[tuple(read)])
    dtype = values.dtype
    values = values.astype(np.float64 if dtype == np.float64 or dtype.itemsize > 2
                           else np.float32)
    pad = [(0, 0)] * values.ndim
    for i in (iy, ix):
        pad[i] = (0, values.shape[i] % 2)
    values = np.pad(values, pad, mode="edge")
    shape = []
    for i, size in enumerate(values.shape):
        shape += [size // 2, 2] if i in (iy, ix) else [size]
    axes_to_mean = tuple(i + 1 + sum(1 for j in (iy, ix) if j < i) for i in (iy, ix))
    return write_chunks(target, region,
                        _stored(values.reshape(shape).mean(axis=axes_to_mean), dtype))


def run_zarr_job(source: ZarrSource, output: str, job: ZarrPlan, *,
                 chunks: tuple[int, ...] | None = None, pyramid: int = 0,
                 overwrite: bool = False, dask_address: str | None = None,
                 threads: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 runner: JobRunner | None = None) -> ZarrOutcome:
    """Compute the output and write it to the store ``output``, whole or not at all.

    One task per block of output chunks (:func:`scale_block_task`, after
    :func:`block_borders` where the input's chunks are compressed), run on ``threads``
    threads here (default: every CPU) or on the Dask cluster at ``dask_address``, whose
    workers read and write the stores themselves; or by ``runner``, entered already
    (:class:`JobRunner`: a command connects before it opens its input), in place of
    those two. ``progress(done, total)`` is called (from this thread) as chunks are
    written. Pyramid levels follow, each from the level above as written
    (:func:`halve_chunk`).
    """
    zarr = _zarr_module()
    from .zarr_zstd import reusing_codecs, reusing_compressors

    location, inner = split_zarr_spec(output)
    if inner:
        raise BadInputError(f"{shown(output)}: write a whole store (NAME.zarr); a path inside one "
                            "is for choosing an input")
    url = is_url(location)
    if url:
        from .storage import refuse_read_only

        refuse_read_only(location)
    existing = _store_exists(location)
    if existing and not overwrite:
        raise FileAccessError(f"{shown(output)}: exists; upconv replaces a store only with "
                              "-y/--overwrite")
    shape = output_shape(job, source.array.shape)
    out_chunks = output_chunks(job, source.array.chunks, shape, chunks)
    target = location if url else _temporary_name(location)
    ome = source.multiscale is not None or pyramid > 0
    fmt = source.zarr_format
    levels = 1 + pyramid
    level_shapes = [_level_shape(shape, job.axes, level) for level in range(levels)]
    level_chunks = [tuple(min(c, n) for c, n in zip(out_chunks, level_shape, strict=True))
                    for level_shape in level_shapes]
    total = sum(_chunk_count(*pair) for pair in zip(level_shapes, level_chunks, strict=True))
    counter = _Counter(progress, total)
    replacing = _Replacement(location) if url and existing else None
    written = False
    try:
        if replacing is not None:
            replacing.remove()
        written = True  # (from here on the target holds what this job writes)
        store = _store(target, read_only=False)
        root = zarr.open_group(store=store, mode="w", zarr_format=fmt) if ome else None
        extra: dict[str, Any] = dict(_codecs(source.array))
        if "compressors" in extra:  # (zstd into reused arrays: upconv.zarr_zstd)
            extra["compressors"] = reusing_compressors(extra["compressors"])
        if fmt == 3:
            extra["dimension_names"] = _dimension_names(source)
        elif ome:  # OME-Zarr 0.4 keys chunks with "/"
            extra["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        arrays = [zarr.create_array(
            store=store, name=str(level) if ome else None, shape=level_shapes[level],
            chunks=level_chunks[level], dtype=job.out_dtype, zarr_format=fmt,
            attributes=({} if ome else source.array.attrs.asdict()), overwrite=True,
            config={"write_empty_chunks": True}, **extra)  # (see write_chunks)
            for level in range(levels)]
        hidden = _HiddenMetadata(target, fmt, ome, levels) if url else None
        with (contextlib.nullcontext(runner) if runner is not None
              else JobRunner(dask_address, threads)) as jobs, jobs.job():
            _scale_all(jobs, job, reusing_codecs(source.array), whole_chunks(arrays[0]),
                       _block_keys(job, level_shapes[0], level_chunks[0]), counter)
            for level in range(1, levels):
                task = functools.partial(halve_chunk, job.axes, arrays[level - 1],
                                         whole_chunks(arrays[level]))
                jobs.wait_all([jobs.submit(task, region) for region in
                               _regions(level_shapes[level], level_chunks[level])], counter)
        if hidden is not None:
            hidden.restore_arrays()
        if ome:
            if hidden is not None:
                hidden.restore_group()
            root.attrs.put(_ome_attributes(source, job, shape, levels))
    except UpconvError as exc:
        if written:
            _remove_what_was_written(target)
        if replacing is not None:
            raise type(exc)(f"{exc}{replacing.outcome()}") from None
        raise
    except Exception as exc:
        if written:
            _remove_what_was_written(target)
        failure = _job_failure(source.spec, output, exc,
                               on_cluster=(runner.address if runner is not None
                                           else dask_address) is not None)
        if replacing is not None:
            raise type(failure)(f"{failure}{replacing.outcome()}") from None
        raise failure from None
    except BaseException:  # Ctrl-C, a signal: nothing half-written stays
        if written:
            _remove_what_was_written(target)
        if replacing is not None and replacing.started:
            warnings.warn(f"{shown(output)}: not written{replacing.outcome(look=False)}",
                          stacklevel=2)
        raise
    if not url:
        from .zarr_local import remove_partial_files

        remove_partial_files(target)  # (a killed worker's chunk, written again whole)
        if existing:
            _replace_folder(target, location)
        else:
            os.rename(target, location)
    return ZarrOutcome(output, shape, job.axes, level_chunks[0], levels, job.plan.name)


class _Replacement:
    """``-y`` into a bucket: the store there is removed first, as zarr's ``mode="w"``
    (and ``dask.array.to_zarr(overwrite=True)``) does, because an object store cannot put
    a new store in its place at once. What a failed job then says of the old store.

    Examples
    --------
    >>> import fsspec
    >>> with fsspec.open("memory://replacement-doc/old.zarr/zarr.json", "w") as f:
    ...     _ = f.write("{}")
    >>> replacing = _Replacement("memory://replacement-doc/old.zarr")
    >>> replacing.remove()
    >>> replacing.outcome()
    "; the store that was there was removed first (-y), as zarr's mode='w' does"
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self.started = self.done = False
        self.objects: int | None = None  # the old store's, counted before removing them

    def remove(self) -> None:
        self.started = True
        listed = _objects(self.location)
        self.objects = None if listed is None else len(listed)
        _remove_store(self.location, listed)  # (the objects as listed: not listed again)
        self.done = True

    def outcome(self, look: bool = True) -> str:
        """What became of the old store, as a clause to end a failure's message; without
        ``look`` (after Ctrl-C, which must not wait for the bucket), nothing is listed."""
        if not self.started:
            return ""
        if self.done:
            return "; the store that was there was removed first (-y), as zarr's mode='w' does"
        listed = _objects(self.location) if look else None
        left = None if listed is None else len(listed)
        if self.objects is None or left is None:
            return "; the store that was there may be partly removed (-y)"
        if left >= self.objects:
            return "; the store that was there is as it was (-y could not remove it)"
        return (f"; removing the store that was there (-y) stopped part way: {self.objects - left}"
                f" of its {self.objects} objects are gone")


def _objects(location: str) -> list[str] | None:
    """The objects a store in a bucket holds; None if they cannot be listed."""
    from .storage import filesystem

    try:
        fs, path = filesystem(location)
        fs.invalidate_cache()
        return fs.find(path)
    except Exception:  # noqa: BLE001 - then the removal lists, or says it cannot
        return None


def _job_failure(input_spec: str, output: str, exc: BaseException,
                 on_cluster: bool = False) -> UpconvError:
    """One line for a job that failed on the way: the store it concerns, secrets redacted.
    A storage service's error is described as for any object (the output's, else the
    input's; ``on_cluster``: raised in a Dask worker's task); anything else (a chunk that
    cannot be decoded) is named as it is."""
    from .storage import _failure, redact

    if isinstance(exc, OSError) or "botocore" in type(exc).__module__:
        for spec, action in ((output, "write"), (input_spec, "read")):
            if is_url(spec):
                return _failure(spec, action, exc, on_worker=on_cluster)
    text = redact(str(exc).splitlines()[0] if str(exc) else "")
    return FileAccessError(f"{shown(output)}: not written ({type(exc).__name__}: {text})")


def _chunk_count(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    return math.prod(-(-n // c) for n, c in zip(shape, chunks, strict=True))


class _Counter:
    """Counts written chunks and reports them to a ``progress(done, total)`` callback."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def add(self, chunks: int) -> None:
        self.done += chunks
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)


def _scale_all(runner: JobRunner, job: ZarrPlan, source: Any, target: Any,
               leads: list[list[list[BlockKey]]], counter: _Counter) -> None:
    """Both phases, a row of blocks at a time: the edges of rows up to ``i + 2`` are asked
    for before the blocks of row ``i``, and at most three rows of blocks are in flight,
    so that what is held (edges, blocks) stays a few rows' worth however big the array.
    Where a block reads its whole window itself (:func:`reads_windows`), there is no
    first phase."""
    borders = None if reads_windows(job, source) else functools.partial(block_borders, job,
                                                                        source)
    scale = functools.partial(scale_block_task, job, source, target)
    for rows in leads:
        edges: dict[tuple[int, int], Any] = {}
        in_flight: list[list[Any]] = []

        def ask_edges(by: int, rows=rows, edges=edges) -> None:
            if borders is not None and by < len(rows) and (by, 0) not in edges:
                for key in rows[by]:
                    edges[(by, key.bx)] = runner.submit(borders, key)

        ask_edges(0)
        for by, row in enumerate(rows):
            ask_edges(by + 1)
            ask_edges(by + 2)
            blocks = []
            for key in row:
                neighbours = {(dy, dx): runner.argument(edges[(by + dy, key.bx + dx)])
                              for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                              if (dy or dx) and (by + dy, key.bx + dx) in edges}
                blocks.append(runner.submit(scale, key, None if borders is None else neighbours))
            in_flight.append(blocks)
            for bx in range(len(row)):
                edges.pop((by - 1, bx), None)
            while len(in_flight) > 2:
                runner.wait_all(in_flight.pop(0), counter)
        for blocks in in_flight:
            runner.wait_all(blocks, counter)


class JobRunner:
    """Where a Zarr job's tasks run: a thread pool here, or a dask.distributed cluster
    (where a task's arguments may be other tasks' futures, resolved on the workers). A
    task's exception comes back as it is, and stops the job.

    Entered, it connects to the cluster in the background and then has each worker
    import what the tasks run (:func:`upconv.cluster.warm_up_for_zarr`, in the worker's
    event loop), so that a command that enters it first opens its input while the
    workers import, rather than before; a scheduler that cannot be reached is reported
    when a job starts (:meth:`job`), after the input's own errors. :meth:`job` scopes
    one job's tasks; leaving the runner closes the connection (or the pool).

    Examples
    --------
    >>> with JobRunner(None, threads=2) as runner, runner.job():
    ...     futures = [runner.submit(pow, 2, n) for n in range(3)]
    ...     [future.result() for future in futures]
    [1, 2, 4]
    """

    def __init__(self, address: str | None, threads: int | None = None) -> None:
        self.address, self.threads = address, threads
        self.client: Any = None
        self.pool: Any = None
        self.futures: list[Any] = []
        self._connecting: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._left = False  # (left before the connection came: it is closed as it comes)

    def __enter__(self) -> JobRunner:
        if self.address is not None:
            self._connecting = threading.Thread(target=self._connect, daemon=True,
                                                name="upconv-connect")
            self._connecting.start()
        else:
            from concurrent.futures import ThreadPoolExecutor

            from .polyphase import default_threads

            self.pool = ThreadPoolExecutor(default_threads() if self.threads is None
                                           else self.threads)
        return self

    def _connect(self) -> None:
        """The background connection, and the workers' warm-up (only a head start: a
        worker that cannot take it is met again, and reported, by the job's own tasks)."""
        from .cluster import _client, warm_up_for_zarr

        try:
            client = _client(self.address)
        except BaseException as exc:  # (raised where a job starts: _connected)
            self._failure = exc
            return
        with self._lock:
            if self._left:
                client.close()
                return
            self.client = client
        try:
            client.run(warm_up_for_zarr, wait=False)
        except Exception:
            pass

    def _connected(self) -> None:
        """Wait for the background connection, if any; raise its error, if it failed."""
        if self._connecting is not None:
            self._connecting.join()
            self._connecting = None
        if self._failure is not None:
            raise self._failure

    @contextlib.contextmanager
    def job(self) -> Iterator[JobRunner]:
        """One job's tasks: when the block ends, however it ends, none of them runs any
        more (cancelled, and those running waited for: a task still running could write
        into a store once it is removed), and the workers let go of their reused
        buffers (:func:`drop_buffers`)."""
        self._connected()
        try:
            yield self
        finally:
            futures, self.futures = self.futures, []
            if self.client is not None:
                from .cluster import stop_tasks

                try:
                    stop_tasks(self.client, futures)
                finally:
                    try:
                        self.client.run(drop_buffers)
                    except Exception:  # a worker gone: its buffers went with it
                        pass
            else:
                from concurrent.futures import wait

                for future in futures:
                    future.cancel()
                wait(futures)
                drop_buffers()

    def submit(self, task: Callable[..., Any], *args: Any) -> Any:
        """Run ``task(*args)``: on the cluster with exactly this command's storage options
        (as a batch's tasks run: :func:`upconv.batch.options_with`; the stores carry
        their own, upconv's objects use these), under the task's own name."""
        self._connected()
        if self.client is not None:
            from dask.utils import funcname

            from .batch import options_with

            future = self.client.submit(options_with(task), *args, pure=False,
                                        key=f"{funcname(task)}-{uuid.uuid4().hex}")
        else:
            future = self.pool.submit(task, *args)
        self.futures.append(future)
        return future

    def argument(self, future: Any) -> Any:
        """What a task is given for another task's result: its future on a cluster (the
        worker fetches the value), the value itself here."""
        return future if self.client is not None else future.result()

    def wait_all(self, futures: list[Any], counter: _Counter) -> None:
        """Wait for ``futures``, counting the chunks each wrote as it finishes; then let go
        of every finished task's future, so that on a cluster their results (a block's
        edges) are kept only while a task still to run needs them."""
        if self.client is not None:
            from distributed import as_completed

            for future in as_completed(futures):
                counter.add(future.result())
        else:
            from concurrent.futures import as_completed as finished

            for future in finished(futures):
                counter.add(future.result())
        self.futures = [future for future in self.futures if not future.done()]

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._left = True
            client, self.client = self.client, None
        if client is not None:
            client.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _dimension_names(source: ZarrSource) -> tuple[str, ...] | None:
    names = getattr(source.array.metadata, "dimension_names", None)
    if names:
        return tuple(names)
    if source.multiscale is not None and source.multiscale.get("axes"):
        return tuple(str(a["name"] if isinstance(a, dict) else a)
                     for a in source.multiscale["axes"])
    return None


def _codecs(array: Any) -> dict[str, Any]:
    """The input's compressors and filters, for an output like it."""
    try:
        return {"compressors": array.compressors or None, "filters": array.filters or None}
    except Exception:  # a codec this zarr cannot describe: zarr's defaults
        return {}


def _level_shape(shape: tuple[int, ...], axes: str, level: int) -> tuple[int, ...]:
    """The shape of pyramid level ``level``: y and x halved (rounded up) ``level`` times."""
    out = list(shape)
    for letter in "yx":
        i = axes.index(letter)
        for _ in range(level):
            out[i] = -(-out[i] // 2)
    return tuple(out)


# --- OME-Zarr metadata ------------------------------------------------------------------------

def _ome_attributes(source: ZarrSource, job: ZarrPlan, shape: tuple[int, ...],
                    levels: int) -> dict:
    """The output group's attributes: the input's, with the datasets and their coordinate
    transformations for the scaled levels."""
    axes = job.axes
    if source.multiscale is not None:
        attributes = copy.deepcopy(source.group_attributes or {})
        multiscale = copy.deepcopy(source.multiscale)
        transforms = copy.deepcopy((source.dataset or {}).get("coordinateTransformations", []))
        version = source.ome_version or ("0.5" if source.zarr_format == 3 else "0.4")
    else:
        attributes = {}
        types = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
        multiscale = {"name": os.path.basename(split_zarr_spec(source.spec)[0]),
                      "axes": [{"name": letter, "type": types[letter]}
                               for letter in axes if letter in types]}
        transforms = []
        version = "0.5" if source.zarr_format == 3 else "0.4"
        if len(multiscale["axes"]) != len(axes):
            raise BadInputError("--pyramid writes OME-Zarr, whose axes are t, c, z, y and x")
    scale = [1.0] * len(axes)
    translation = None
    for entry in transforms:
        if entry.get("type") == "scale" and "scale" in entry:
            scale = [float(v) for v in entry["scale"]]
        elif entry.get("type") == "translation" and "translation" in entry:
            translation = [float(v) for v in entry["translation"]]
    base_scale, base_shift = _grid_change(job, axes, scale)
    datasets = []
    for level in range(levels):
        level_scale = list(base_scale)
        level_shift = list(base_shift)
        for letter in "yx":
            i = axes.index(letter)
            level_scale[i] = base_scale[i] * 2 ** level
            level_shift[i] = base_shift[i] + base_scale[i] * (2 ** level - 1) / 2
        origin = [(translation[i] if translation else 0.0) + level_shift[i]
                  for i in range(len(axes))]
        entry = [{"type": "scale", "scale": level_scale}]
        if translation is not None or any(origin):
            entry.append({"type": "translation", "translation": origin})
        datasets.append({"path": str(level), "coordinateTransformations": entry})
    multiscale["datasets"] = datasets
    multiscale.pop("version", None) if version == "0.5" else multiscale.setdefault(
        "version", version)
    if version == "0.5":
        ome = dict(attributes.get("ome", {}))
        ome["version"] = ome.get("version", "0.5")
        ome["multiscales"] = [multiscale] + list(ome.get("multiscales", [])[1:])
        attributes["ome"] = ome
    else:
        old = attributes.get("multiscales", [])
        attributes["multiscales"] = [multiscale] + list(old[1:])
    return attributes


def _grid_change(job: ZarrPlan, axes: str, scale: list[float]) -> tuple[list[float],
                                                                           list[float]]:
    """The output's pixel size and the shift of its first pixel's centre, in the input's
    physical units: the half-pixel grid (``(n_in / n_out - 1) / 2`` input pixels), or for a
    transposed convolution in PyTorch's geometry ``(padding - (k - 1) / 2) / s``."""
    new_scale, shift = list(scale), [0.0] * len(axes)
    plan = job.plan
    for letter, blocks, axis in (("y", job.rows, 0), ("x", job.cols, 1)):
        i = axes.index(letter)
        if plan.method is Method.TRANSPOSE and not plan.geometry.centred:
            stride = plan.kernel.stride
            new_scale[i] = scale[i] / stride
            pad = plan.geometry.padding[axis]
            shift[i] = scale[i] * (pad - (plan.kernel.shape[axis] - 1) / 2) / stride
        else:
            ratio = blocks.n_in / blocks.n_out
            new_scale[i] = scale[i] * ratio
            shift[i] = scale[i] * (ratio - 1) / 2
    return new_scale, shift


# --- whole or nothing -------------------------------------------------------------------------

def _temporary_name(location: str) -> str:
    folder, name = os.path.split(os.path.abspath(location))
    return os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")


def _store_exists(location: str) -> bool:
    """Whether a store (a folder, or a prefix with objects under it) is there already."""
    if not is_url(location):
        return os.path.exists(location)
    from .storage import exists

    return exists(location)


def _remove_what_was_written(target: str) -> None:
    """After a failure: remove what the job wrote, as far as can be (a store that cannot
    be removed, say a bucket that refuses deletions, must not hide the failure)."""
    try:
        _remove_store(target)
    except Exception as exc:
        warnings.warn(f"{shown(target)}: what was written could not all be removed "
                      f"({type(exc).__name__})", stacklevel=2)


def _remove_store(location: str, objects: list[str] | None = None) -> None:
    """Remove a store: a folder, or the objects under a prefix (``objects``, if given, as
    listed already: removed in bulk without a second listing; then what is left, folders
    of a file system that has them, if anything is)."""
    if not is_url(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    from .storage import filesystem

    fs, path = filesystem(location)
    try:
        if objects:
            fs.rm(objects)
            fs.invalidate_cache()
        if not objects or fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
    fs.invalidate_cache()


def _replace_folder(temporary: str, location: str) -> None:
    """Put a finished store in place of an existing one (``--overwrite``)."""
    old = _temporary_name(location) + ".old"
    os.rename(location, old)
    os.rename(temporary, location)
    shutil.rmtree(old, ignore_errors=True)


class _HiddenMetadata:
    """A new store's metadata, taken away until every chunk is written (a reader finds no
    array, or a whole one): the arrays' put back first, then the group's."""

    def __init__(self, location: str, fmt: int, ome: bool, levels: int) -> None:
        from .storage import filesystem

        self.location = location
        fs, path = filesystem(location)
        self.root = path.rstrip("/")
        names = ["zarr.json"] if fmt == 3 else [".zarray", ".zattrs"]
        self.array_keys = names if not ome else [
            f"{level}/{name}" for level in range(levels) for name in names]
        self.group_keys = (["zarr.json"] if fmt == 3 else [".zgroup", ".zattrs"]) if ome else []
        self.saved: dict[str, bytes] = {}
        for key in self.array_keys + self.group_keys:
            try:
                self.saved[key] = fs.cat_file(f"{self.root}/{key}")
            except FileNotFoundError:
                continue
            fs.rm_file(f"{self.root}/{key}")

    def _put(self, keys: list[str]) -> None:
        from .storage import filesystem

        fs, _ = filesystem(self.location)
        for key in keys:
            if key in self.saved:
                fs.pipe_file(f"{self.root}/{key}", self.saved[key])

    def restore_arrays(self) -> None:
        self._put(self.array_keys)

    def restore_group(self) -> None:
        self._put(self.group_keys)


