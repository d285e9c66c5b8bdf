"""Zarr arrays scaled chunk by chunk with Dask: local stores or URLs, OME-Zarr aware.

``upconv scale in.zarr out.zarr -f 2`` reads the array with ``dask.array``
(``pip install 'upconv[dask]'``, which brings dask and zarr), scales its
``y`` and ``x`` axes block by block and writes a Zarr store of the input's
format (3, or 2). Each block of the input is extended by the method's halo
(:func:`dask.array.overlap.overlap`, as :func:`dask.array.map_overlap` does),
resampled as an image of its own, and cut to the output block it owns:

- at whole-number factors and for transposed convolutions the half-pixel
  grid is shift-invariant (input ``i + 1`` is output ``o + s``), so a block
  that carries the taps' reach of real samples on each side gives exactly the
  whole array's values; a rational factor ``p/q`` (output ``n p / q`` from
  ``n``) works the same way on blocks of multiples of ``q``; an axis with no
  such period is taken whole (one block along it);
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

import copy
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import BadInputError, FileAccessError, UpconvError
from .methods import METHODS, SPLINE_HALO, Method
from .scaling import Resampling, plan_resampling, resample
from .transpose import output_geometry, post_kernel_weights

__all__ = ["is_zarr", "split_zarr_spec", "close_stores", "ZarrSource", "open_zarr", "axis_names",
           "AxisBlocks", "ZarrPlan", "plan_zarr_job", "scale_block", "run_zarr_job",
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
        import dask.array  # noqa: F401
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
    from .fileio import is_url

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
    return zarr.storage.LocalStore(os.path.abspath(location), read_only=read_only)


#: Stores opened on object stores in this process, whose sessions :func:`close_stores` ends.
_opened: list[Any] = []


def close_stores() -> None:
    """End the HTTP sessions of the object-store filesystems this process opened for Zarr
    (they live on zarr's event loop, which does not close them itself)."""
    if not _opened:
        return
    from zarr.core.sync import sync

    seen = set()
    while _opened:
        fs = getattr(_opened.pop(), "fs", None)
        client = getattr(fs, "_s3", None)
        if client is None or id(fs) in seen:
            continue
        seen.add(id(fs))
        try:
            sync(client.__aexit__(None, None, None))
        except Exception:  # a session that is gone already
            pass
        fs._s3 = None


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
        raise BadInputError(f"{name}: OME-Zarr axes {[e.get('name') for e in entries]} have "
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
        raise BadInputError(f"{name}: OME-Zarr axes have more than one channel axis")
    return "".join(letters)


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
        axes = LAYOUT_ALIASES.get(layout.lower(), layout.lower())
        if (set(axes) - set(AXIS_LETTERS) or len(set(axes)) != len(axes)
                or "y" not in axes or "x" not in axes):
            raise BadInputError(f"--layout {layout}: name each axis once with letters of "
                                f"{AXIS_LETTERS!r}, including y and x (e.g. yx, yxc, cyx, tczyx)")
        if len(axes) != len(shape):
            raise BadInputError(f"{name}: --layout {layout} names {len(axes)} axes, but the "
                                f"array has {len(shape)} (shape {shape})")
        return axes
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3 and shape[2] <= 4:
        return "yxc"
    if len(shape) == 3 and shape[0] <= 4:
        return "cyx"
    raise BadInputError(f"{name}: cannot tell the axes of an array of shape {shape} without "
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
            arrays = sorted(name for name, _ in node.arrays())
            listed = ", ".join(arrays[:8]) or "none"
            raise BadInputError(f"{spec}: a group without OME-Zarr multiscales; choose an array "
                                f"with STORE:PATH (arrays here: {listed})")
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
            axes = axis_names(multiscale.get("axes") or ["y", "x"][-array.ndim:], spec) \
                if multiscale.get("axes") else layout_axes(layout, array.shape, spec)
            if len(axes) != array.ndim:
                raise BadInputError(f"{spec}: OME-Zarr names {len(axes)} axes for an array of "
                                    f"{array.ndim}")
            if layout is not None and layout_axes(layout, array.shape, spec) != axes:
                raise BadInputError(f"{spec}: --layout {layout} contradicts the OME-Zarr axes "
                                    f"({axes}); drop --layout")
            return ZarrSource(spec, array, axes, attributes, multiscale, dataset, version)
    return ZarrSource(spec, array, layout_axes(layout, array.shape, spec))


def _not_found(spec: str, location: str, path: str) -> str:
    if not path:
        return f"{spec}: no Zarr store there"
    return f"{spec}: no array or group {path!r} in {location}"


def _read_failure(spec: str, exc: BaseException) -> UpconvError:
    from .fileio import is_url

    if is_url(spec):
        from .storage import _failure

        return _failure(spec, "read", exc)
    return BadInputError(f"{spec}: cannot read as Zarr ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})")


# --- the plan: blocks along y and x ---------------------------------------------------------

@dataclass(frozen=True)
class AxisBlocks:
    """How one scaled axis is cut into blocks.

    Attributes
    ----------
    n_in, n_out : int
        The axis' input and output lengths.
    bounds_in, bounds_out : tuple of int
        Block boundaries: block ``j`` reads input ``[bounds_in[j], bounds_in[j+1])``
        plus the halo and owns output ``[bounds_out[j], bounds_out[j+1])``.
    halo : int
        Input samples of context on each side (fewer at the array's ends).
    period_in, period_out : int
        The grid's period: ``period_in`` input samples to ``period_out`` outputs.
    """

    n_in: int
    n_out: int
    bounds_in: tuple[int, ...]
    bounds_out: tuple[int, ...]
    halo: int
    period_in: int
    period_out: int

    @property
    def chunks_in(self) -> tuple[int, ...]:
        return tuple(np.diff(self.bounds_in).tolist())

    @property
    def chunks_out(self) -> tuple[int, ...]:
        return tuple(np.diff(self.bounds_out).tolist())

    def context(self, block: int) -> tuple[int, int]:
        """The halo actually read before and after ``block`` (none past the array's ends)."""
        first, last = self.bounds_in[block], self.bounds_in[block + 1]
        return min(self.halo, first), min(self.halo, self.n_in - last)

    def output_base(self, first_read: int) -> int:
        """The output index of a block image's output 0, when its first input is
        ``first_read`` (a multiple of ``period_in``)."""
        return first_read // self.period_in * self.period_out


def axis_blocks(n_in: int, n_out: int, period_in: int, period_out: int, halo: int,
                block: int, transposed: bool = False) -> AxisBlocks:
    """Cut an axis into blocks of about ``block`` input samples.

    Blocks and halo are multiples of ``period_in``; every block is at least
    the halo long (so that a block's context comes from its neighbours only);
    an axis too short for that, or without a short period, is one block.
    Output boundaries are the input's times ``period_out / period_in``, the
    last one the axis' output length (a transposed convolution in PyTorch's
    geometry may end short of or past ``s n``).

    Examples
    --------
    >>> blocks = axis_blocks(100, 200, 1, 2, 5, 32)
    >>> blocks.chunks_in, blocks.chunks_out
    ((32, 32, 36), (64, 64, 72))
    """
    halo = -(-halo // period_in) * period_in
    size = max(block // period_in * period_in, period_in, halo)
    if period_in * 2 > n_in or size >= n_in:
        return AxisBlocks(n_in, n_out, (0, n_in), (0, n_out), halo, period_in, period_out)
    bounds = list(range(0, n_in, size)) + [n_in]
    if bounds[-1] - bounds[-2] < halo:
        del bounds[-2]  # a last block shorter than the halo joins the one before
    outs = [b // period_in * period_out for b in bounds[:-1]] + [n_out]
    while len(outs) > 2 and outs[-2] >= outs[-1]:  # a padded transpose ending early
        del outs[-2], bounds[-2]
    return AxisBlocks(n_in, n_out, tuple(bounds), tuple(outs), halo, period_in, period_out)


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

    def block_plan(self, shape: tuple[int, int]) -> Resampling:
        """The plan for a block image of ``shape`` (its input with context)."""
        plan = self.plan
        if plan.method is Method.TRANSPOSE:
            assert plan.kernel is not None and plan.geometry is not None
            geometry = output_geometry(plan.kernel, shape, None if plan.geometry.centred
                                       else plan.geometry.padding, self.output_padding)
            return replace(plan, input_shape=shape, shape=geometry.shape, geometry=geometry)
        out = (self.rows.output_base(shape[0]), self.cols.output_base(shape[1]))
        if shape[0] == self.rows.n_in:
            out = (self.rows.n_out, out[1])
        if shape[1] == self.cols.n_in:
            out = (out[0], self.cols.n_out)
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

    ``chunks`` is the input's chunking (one entry per stored axis);
    ``out_chunks`` the output's (y, x) chunks asked for (``--chunks``), used as the
    blocks' output size when the grid allows (else the blocks follow the input's
    chunks and the output is rechunked).

    Examples
    --------
    >>> job = plan_zarr_job((100, 120, 3), np.dtype(np.uint16), "yxc", (50, 40, 3),
    ...                     method="bilinear", factor=(2.0, 2.0))
    >>> job.plan.shape, job.rows.chunks_out, job.cols.chunks_out, job.out_dtype
    ((200, 240), (100, 100), (80, 80, 80), dtype('uint16'))
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
    (out_h, out_w) = plan.shape
    if method is Method.TRANSPOSE:
        assert plan.kernel is not None
        stride = plan.kernel.stride
        periods = ((1, stride), (1, stride))
    else:
        periods = (_period(height, out_h), _period(width, out_w))
    blocks = []
    for axis, (n_in, n_out, chunk, (p_in, p_out)) in enumerate(
            ((height, out_h, chunks[iy], periods[0]), (width, out_w, chunks[ix], periods[1]))):
        wanted = chunk
        if out_chunks is not None and out_chunks[axis] * p_in % p_out == 0:
            wanted = out_chunks[axis] * p_in // p_out
        halo = axis_halo(plan, axis, work)
        aperiodic = p_in > max(64, n_in // 4)
        blocks.append(axis_blocks(n_in, n_out, p_in, p_out, halo,
                                  n_in if aperiodic else wanted))
    return ZarrPlan(plan, axes, blocks[0], blocks[1], output_padding, work, out_dtype)


# --- one block ------------------------------------------------------------------------------

def scale_block(block: np.ndarray, job: ZarrPlan, block_y: int, block_x: int) -> np.ndarray:
    """The output block ``(block_y, block_x)`` from its input block with context.

    ``block`` is ``(..., y, x, c)`` (any leading axes, carried; ``c`` the
    channels), the input block ``bounds_in[j]`` to ``bounds_in[j + 1]`` along
    y and x with :meth:`AxisBlocks.context` more samples on each side. Each
    plane is resampled as an image of its own (:func:`upconv.scaling.resample`)
    and cut to the outputs the block owns.

    Examples
    --------
    >>> import upconv
    >>> image = np.random.default_rng(0).random((40, 30, 1))
    >>> job = plan_zarr_job(image.shape, image.dtype, "yxc", (16, 16, 1),
    ...                     method="bilinear", factor=(2.0, 2.0))
    >>> job.rows.chunks_in, job.rows.context(1), job.cols.context(0)
    ((16, 16, 8), (2, 2), (0, 2))
    >>> out = scale_block(image[14:34, 0:18], job, 1, 0)
    >>> bool((out == upconv.scale(image, 2, "bilinear")[32:64, 0:32]).all())
    True
    """
    ranges = []
    for blocks, index, size in ((job.rows, block_y, block.shape[-3]),
                                (job.cols, block_x, block.shape[-2])):
        before, after = blocks.context(index)
        first = blocks.bounds_in[index] - before
        expected = blocks.bounds_in[index + 1] + after - first
        assert size == expected, (size, expected)
        base = blocks.output_base(first)
        ranges.append((blocks.bounds_out[index] - base, blocks.bounds_out[index + 1] - base))
    plan = job.block_plan((block.shape[-3], block.shape[-2]))
    (r0, r1), (c0, c1) = ranges
    assert 0 <= r0 < r1 <= plan.shape[0] and 0 <= c0 < c1 <= plan.shape[1], (ranges, plan.shape)
    lead = block.shape[:-3]
    out = np.empty(lead + (r1 - r0, c1 - c0, plan.channels), job.out_dtype)
    for index in np.ndindex(*lead):
        plane = block[index]
        if job.plan.method is not Method.NEAREST:
            plane = plane.astype(job.work_dtype, copy=False)
        values = resample(plane, plan)[r0:r1, c0:c1]
        out[index] = _stored(values, job.out_dtype)
    return out


def _stored(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values as the output's type: integers rounded to nearest and clipped to the type."""
    if dtype.kind in "fb" or values.dtype == dtype:
        return values.astype(dtype, copy=False)
    limits = np.iinfo(dtype)
    return np.clip(np.rint(values), limits.min, limits.max).astype(dtype)


# --- running it -------------------------------------------------------------------------

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


def _engine_order(axes: str) -> tuple[list[int], str]:
    """The permutation that takes stored axes to (carried..., y, x, c) and the order's letters."""
    carried = [i for i, letter in enumerate(axes) if letter not in "yxc"]
    order = carried + [axes.index("y"), axes.index("x")]
    if "c" in axes:
        order.append(axes.index("c"))
    return order, "".join(axes[i] for i in order)


def output_chunks(job: ZarrPlan, source_chunks: tuple[int, ...], out_shape: tuple[int, ...],
                  asked: tuple[int, ...] | None) -> tuple[int, ...]:
    """The output's chunks per stored axis: ``--chunks`` if given (one per axis, or y and x
    only), else the input's chunking scaled (the blocks' output sizes along y and x)."""
    axes = job.axes
    chunks = []
    for i, letter in enumerate(axes):
        if letter == "y":
            chunks.append(job.rows.chunks_out[0])
        elif letter == "x":
            chunks.append(job.cols.chunks_out[0])
        elif letter == "c":
            chunks.append(out_shape[i] if _mixes_channels(job) else source_chunks[i])
        else:
            chunks.append(source_chunks[i])
    if asked is not None:
        if len(asked) == 2:
            chunks[axes.index("y")], chunks[axes.index("x")] = asked
        elif len(asked) == len(axes):
            chunks = list(asked)
        else:
            raise BadInputError(f"--chunks: give y and x chunks, or one per axis of {axes} "
                                f"({len(axes)}); got {len(asked)}")
    return tuple(min(max(1, c), n) for c, n in zip(chunks, out_shape, strict=True))


def _mixes_channels(job: ZarrPlan) -> bool:
    kernel = job.plan.kernel
    return kernel is not None and kernel.mixes_channels


def build_output(source: ZarrSource, job: ZarrPlan, chunks: tuple[int, ...] | None):
    """The output as a lazy ``dask.array`` in the stored axis order, and its chunks."""
    import dask.array as da

    axes = job.axes
    array = source.array
    read_chunks = []
    for i, letter in enumerate(axes):
        if letter == "y":
            read_chunks.append(job.rows.chunks_in)
        elif letter == "x":
            read_chunks.append(job.cols.chunks_in)
        elif letter == "c" and _mixes_channels(job):
            read_chunks.append((array.shape[i],))
        else:
            read_chunks.append(array.chunks[i])
    data = da.from_zarr(array, chunks=tuple(read_chunks), inline_array=True)
    order, letters = _engine_order(axes)
    data = data.transpose(order)
    if "c" not in axes:
        data = data[..., None]
    depth = {data.ndim - 3: job.rows.halo, data.ndim - 2: job.cols.halo}
    depth = {axis: value for axis, value in depth.items()
             if len(data.chunks[axis]) > 1}
    extended = da.overlap.overlap(data, depth=depth or 0, boundary="none",
                                  allow_rechunk=False) if depth else data
    out_c = job.plan.channels
    c_chunks = data.chunks[-1] if not _mixes_channels(job) and out_c == data.shape[-1] else (
        (out_c,))
    out_chunks = data.chunks[:-3] + (job.rows.chunks_out, job.cols.chunks_out, c_chunks)

    def compute(block: np.ndarray, block_id: tuple[int, ...]) -> np.ndarray:
        return scale_block(block, job, block_id[-3], block_id[-2])

    result = extended.map_blocks(compute, chunks=out_chunks, dtype=job.out_dtype,
                                 name="upconv-scale-" + uuid.uuid4().hex[:8])
    if "c" not in axes:
        result = result[..., 0]
    inverse = list(np.argsort(order))
    result = result.transpose(inverse)
    shape = result.shape
    wanted = output_chunks(job, array.chunks, shape, chunks)
    return result, wanted


def _aligned(result, chunks: tuple[int, ...]):
    """The dask array rechunked so no block spans two output chunks (each chunk is written
    by one task: never two writers of one chunk)."""
    ok = all(int(edge) % c == 0 for dims, c in zip(result.chunks, chunks, strict=True)
             for edge in np.cumsum(dims[:-1]))
    return result if ok else result.rechunk(chunks)


def run_zarr_job(source: ZarrSource, output: str, job: ZarrPlan, *,
                 chunks: tuple[int, ...] | None = None, pyramid: int = 0,
                 overwrite: bool = False, dask_address: str | None = None,
                 threads: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ZarrOutcome:
    """Compute the output and write it to the store ``output``, whole or not at all.

    ``progress(done, total)`` is called (from this thread) as output chunks
    are written. Locally the blocks run on ``threads`` threads (default:
    every CPU); with ``dask_address`` on that cluster, whose workers read and
    write their chunks themselves. Pyramid levels are made after the output,
    each from the level above as written.
    """
    zarr = _zarr_module()
    from .fileio import is_url

    location, inner = split_zarr_spec(output)
    if inner:
        raise BadInputError(f"{output}: write a whole store (NAME.zarr); a path inside one "
                            "is for choosing an input")
    result, out_chunks = build_output(source, job, chunks)
    result = _aligned(result, out_chunks)
    url = is_url(location)
    existing = _store_exists(location)
    if existing and not overwrite:
        raise FileAccessError(f"{output}: exists; upconv replaces a store only with "
                              "-y/--overwrite")
    target = location if url else _temporary_name(location)
    ome = source.multiscale is not None or pyramid > 0
    fmt = source.zarr_format
    levels = 1 + pyramid
    shape = result.shape
    level_shapes = [_level_shape(shape, job.axes, level) for level in range(levels)]
    level_chunks = [tuple(min(c, n) for c, n in zip(out_chunks, level_shape, strict=True))
                    for level_shape in level_shapes]
    total = sum(_chunk_count(*pair) for pair in zip(level_shapes, level_chunks, strict=True))
    counter = _Counter(progress, total)
    try:
        if url and existing:
            _remove_store(location)
        store = _store(target, read_only=False)
        root = zarr.open_group(store=store, mode="w", zarr_format=fmt) if ome else None
        extra: dict[str, Any] = dict(_codecs(source.array))
        if fmt == 3:
            extra["dimension_names"] = _dimension_names(source)
        elif ome:  # OME-Zarr 0.4 keys chunks with "/"
            extra["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        arrays = [zarr.create_array(
            store=store, name=str(level) if ome else None,
            shape=level_shapes[level], chunks=level_chunks[level],
            dtype=job.out_dtype, zarr_format=fmt,
            attributes=({} if ome else source.array.attrs.asdict()), overwrite=True, **extra)
            for level in range(levels)]
        hidden = _hide_metadata(target, fmt, ome, levels) if url else None
        _write(result, arrays[0], dask_address, threads, counter)
        for level in range(1, levels):
            import dask.array as da

            above = da.from_zarr(arrays[level - 1], inline_array=True)
            _write(_halved(above, job.axes, job.out_dtype).rechunk(level_chunks[level]),
                   arrays[level], dask_address, threads, counter)
        if hidden is not None:
            hidden.restore_arrays()
        if ome:
            if hidden is not None:
                hidden.restore_group()
            root.attrs.put(_ome_attributes(source, job, shape, levels))
    except UpconvError:
        _remove_store(target)
        raise
    except Exception as exc:
        _remove_store(target)
        raise _job_failure(source.spec, output, exc) from None
    except BaseException:  # Ctrl-C, a signal: nothing half-written stays
        _remove_store(target)
        raise
    if not url:
        if existing:
            _replace_folder(target, location)
        else:
            os.rename(target, location)
    return ZarrOutcome(output, shape, job.axes, level_chunks[0], levels, job.plan.name)


def _job_failure(input_spec: str, output: str, exc: BaseException) -> UpconvError:
    """One line for a job that failed on the way: the store it concerns, secrets redacted."""
    from .fileio import is_url

    if not isinstance(exc, OSError) and "botocore" not in type(exc).__module__:
        from .storage import redact

        text = redact(str(exc).splitlines()[0] if str(exc) else "")
        return FileAccessError(f"{output}: not written ({type(exc).__name__}: {text})")
    for spec, action in ((output, "write"), (input_spec, "read")):
        if is_url(spec):
            from .storage import _failure

            return _failure(spec, action, exc)
    return FileAccessError(f"{output}: not written ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})")


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


def _write_region(values: np.ndarray, array: Any, region: tuple[slice, ...]) -> int:
    """One task's write: its block into the output array (whole chunks, one writer each);
    returns the number of chunks written."""
    array[region] = values
    return _chunk_count(values.shape, array.chunks) if values.size else 0


def _write(result, array: Any, dask_address: str | None, threads: int | None,
           counter: _Counter) -> None:
    """Compute a dask array block by block and write each block to ``array``: on threads
    here, or on a cluster whose workers write their blocks themselves."""
    import dask

    blocks = result.to_delayed(optimize_graph=True)
    starts = [np.cumsum((0,) + dims[:-1]) for dims in result.chunks]
    writes = []
    for index in np.ndindex(*blocks.shape):
        region = tuple(slice(int(first[i]), int(first[i]) + dims[i])
                       for first, dims, i in zip(starts, result.chunks, index, strict=True))
        writes.append(dask.delayed(_write_region, pure=False)(
            blocks[index], array, region, dask_key_name=f"upconv-write-{uuid.uuid4().hex}"))
    if dask_address is not None:
        _compute_on_cluster(writes, dask_address, counter)
        return
    from dask.callbacks import Callback

    from .polyphase import default_threads

    def posttask(key, value, dsk, state, worker_id) -> None:
        if isinstance(key, str) and key.startswith("upconv-write-"):
            counter.add(value)

    with Callback(posttask=posttask):
        dask.compute(*writes, scheduler="threads",
                     num_workers=default_threads() if threads is None else threads)


def _compute_on_cluster(writes: list, address: str, counter: _Counter) -> None:
    """Run the writes on a dask.distributed cluster; a task's exception comes back as it is,
    and a task lost with its worker is run again by the scheduler."""
    from distributed import as_completed

    from .cluster import _client

    client = _client(address)
    try:
        futures = client.compute(writes)
        for future in as_completed(futures):
            counter.add(future.result())
    finally:
        client.close()


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


def _halved(level, axes: str, dtype: np.dtype):
    """A pyramid level: the 2x2 mean along y and x (an odd last row or column averaged with
    itself), rounded back to integers."""
    import dask.array as da

    iy, ix = axes.index("y"), axes.index("x")
    pad = [(0, 0)] * level.ndim
    pad[iy] = (0, level.shape[iy] % 2)
    pad[ix] = (0, level.shape[ix] % 2)
    values = level.astype(np.float64 if dtype == np.float64 or dtype.itemsize > 2
                          else np.float32)
    if any(p[1] for p in pad):
        values = da.pad(values, pad, mode="edge")
    mean = da.coarsen(np.mean, values, {iy: 2, ix: 2}, trim_excess=False)
    return mean.map_blocks(_stored, dtype, dtype=dtype)


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
    from .fileio import is_url

    if not is_url(location):
        return os.path.exists(location)
    from .storage import filesystem

    fs, path = filesystem(location)
    try:
        return bool(fs.exists(path.rstrip("/") + "/zarr.json")
                    or fs.exists(path.rstrip("/") + "/.zgroup")
                    or fs.exists(path.rstrip("/") + "/.zarray")
                    or fs.ls(path, detail=False))
    except FileNotFoundError:
        return False


def _remove_store(location: str) -> None:
    from .fileio import is_url

    if not is_url(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    from .storage import filesystem

    fs, path = filesystem(location)
    try:
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


def _hide_metadata(location: str, fmt: int, ome: bool, levels: int) -> _HiddenMetadata:
    return _HiddenMetadata(location, fmt, ome, levels)
