"""One image file through ``upconv scale``: load, plan, resample (whole or in tiles), save.

Everything here is plain data in and out (no click, no printing), so that a
batch can run :func:`scale_file` in worker processes or on a Dask cluster and
report what happened in the parent. The path of one job:

1. :func:`scale_file` reads the image (:mod:`upconv.images`), or only the
   header of an ``.npy`` that will be streamed (:mod:`upconv.npy`);
2. :func:`upconv.scaling.plan_resampling` settles the kernel, channels,
   alpha, boundary and output size once;
3. the output is computed whole, or in tiles of output rows
   (:mod:`upconv.tiles`), and converted back to the stored sample type;
4. it is written atomically (:mod:`upconv.fileio`) and measured for the
   one-line checkerboard summary (:mod:`upconv.reporting`).
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BadInputError
from .fileio import (
    discard,
    finish,
    finish_upload,
    is_url,
    output_target,
    output_writer,
    shown,
    sync_file,
    written_in_place,
)
from .images import (
    DEFAULT_MAX_PIXELS,
    Picture,
    SaveOptions,
    check_writable,
    format_for,
    image_writer,
    is_npy_file,
    load_image,
    with_samples,
)
from .interpolate import x_coefficients
from .kernel_files import default_kernel, load_bias, resolve_kernel
from .kernels import Kernel
from .memory import release_free_memory
from .methods import Method
from .npy import NpyFile, check_npy_image, create_npy, npy_header, npy_samples
from .options import Boundary
from .report import dc_gain_note
from .reporting import (
    SAMPLE_ABOVE,
    Report,
    checkerboard_line,
    report_about,
    summary_sampler,
    summary_text,
)
from .samples import store_as, to_float
from .scaling import (
    Resampling,
    plan_resampling,
    resample,
    resample_band,
    stride_from_factor,
)
from .tiles import tile_bands, tile_rows_for

if TYPE_CHECKING:
    from .storage import PartUpload

__all__ = ["ScaleSettings", "ScaleResult", "scale_file", "scale_job", "resolve_settings_kernel",
           "compute_band", "write_band"]


@dataclass(frozen=True)
class ScaleSettings:
    """What ``upconv scale`` was asked to do, independent of the files."""

    method: Method = Method.BICUBIC
    factor: tuple[float, float] | None = None
    size: tuple[int | None, int | None] | None = None
    #: how a size of both sides is met: "fill" (exactly), "inside" or "cover" (keep aspect)
    fit: str = "fill"
    boundary: str | None = None
    kernel_spec: str | None = None
    #: a bias per output channel: FILE or FILE:KEY (a checkpoint's tensor)
    bias_spec: str | None = None
    padding: int | None = None
    #: None: the kernel's own (0 unless its file says)
    output_padding: int | None = None
    #: an .npy's layout: None (as the array is), "hwc" or "chw"
    layout: str | None = None
    post_kernel: str | None = None
    linear_light: bool = False
    format_name: str | None = None
    #: how outputs are written: quality, PNG compression, JPEG subsampling, metadata
    save: SaveOptions = SaveOptions()
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None
    #: False: max_pixels is the default, which does not limit streamed .npy outputs
    max_pixels_given: bool = False
    #: measure the output fully (the JSON report) rather than for the one-line summary
    full_report: bool = False
    #: measure the output for the one-line checkerboard summary
    summary_line: bool = True
    tile: int | None = None
    #: single-file jobs only: compute a streamed .npy's tiles on this Dask scheduler
    dask_address: str | None = None
    #: object stores' options (``--storage-option``), for worker processes
    storage_options: dict | None = None


@dataclass
class ScaleResult:
    """What happened to one file."""

    input: str
    output: str
    size: tuple[int, int]
    method: str
    #: the checkerboard part of the summary line ("checkerboard 0.12 grey levels (none)")
    checkerboard: str = ""
    score: float | None = None  # the checkerboard score behind that text
    report: Report | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``OUTPUT WxH, method, checkerboard ...``: the line every ``upconv scale`` ends with."""
        name = "stdout" if self.output == "-" else shown(self.output)
        return f"{name} {self.size[0]}x{self.size[1]}, {self.method}, {self.checkerboard}"


@functools.lru_cache(maxsize=8)
def _kernel(spec: str | None, stride: int | None, bias_spec: str | None) -> Kernel:
    kernel = resolve_kernel(spec or default_kernel(stride), stride)
    return kernel if bias_spec is None else replace(kernel, bias=load_bias(bias_spec))


def resolve_settings_kernel(settings: ScaleSettings) -> Kernel | None:
    """The transpose kernel the settings ask for, loaded once per process."""
    if settings.method is not Method.TRANSPOSE:
        return None
    stride = stride_from_factor(settings.factor) if settings.factor is not None else None
    return _kernel(settings.kernel_spec, stride, settings.bias_spec)


@dataclass(frozen=True)
class _Job:
    """One file's resampling plan, and how it is computed (whole or in tiles)."""

    plan: Resampling
    tile_rows: int | None  # None: the whole image at once
    notes: tuple[str, ...]
    #: a network's feature maps (more than 4 channels, or C x H x W), not an image: its
    #: values are not grey levels, so no one-line checkerboard figure or brightness note
    feature_maps: bool = False


def _plan_job(settings: ScaleSettings, shape: tuple[int, ...], fmt: str,
              streamed: bool = False, alpha: bool = False, planes: bool = False) -> _Job:
    """Settle the job for an image of ``shape`` (H, W, C), before any pixel is computed;
    ``alpha``: its last channel is alpha (2 or 4 channels of an image file); ``planes``:
    the array is laid out C x H x W (a network's feature maps)."""
    channels = shape[2] if len(shape) == 3 else 1
    plan = plan_resampling(
        (shape[0], shape[1], channels), settings.factor, settings.method, settings.boundary,
        output_shape=settings.size, kernel=resolve_settings_kernel(settings),
        padding=settings.padding, output_padding=settings.output_padding,
        post_kernel=settings.post_kernel, alpha=alpha,
        linear_light=settings.linear_light, threads=settings.threads, fit=settings.fit)
    out_h, out_w = plan.shape
    # A streamed .npy never sits in memory: only a --max-pixels the user gave limits it.
    if (settings.max_pixels_given or not streamed) and out_h * out_w > settings.max_pixels:
        raise BadInputError(f"the output would be {out_w}x{out_h} = {out_w * out_h} pixels, "
                            f"over the limit of {settings.max_pixels} (raise it with "
                            "--max-pixels)")
    check_writable(fmt, out_w, out_h)
    notes = []
    if out_h < shape[0] or out_w < shape[1]:
        notes.append("the output is smaller than the input; upconv does not low-pass filter "
                     "before shrinking, so fine detail will alias")
    feature_maps = planes or plan.channels > 4 or channels > 4
    if plan.kernel is not None and not feature_maps:  # brightness is an image's notion
        gain_note = dc_gain_note(plan.kernel)
        if gain_note:
            notes.append(gain_note)
    if plan.channels > 4 and fmt != "npy":
        raise BadInputError(f"the output has {plan.channels} channels; only .npy output can "
                            "hold more than 4")
    return _Job(plan, tile_rows_for(settings.tile, out_h * out_w), tuple(notes),
                feature_maps)


def scale_file(input_path: str, output_path: str, settings: ScaleSettings) -> ScaleResult:
    """Upsample one image file into another; raise UpconvError on bad input.

    The output is written atomically; the result carries the notes (things
    the user should hear about), the one-line checkerboard summary, and the
    full report when ``settings.full_report``. Big outputs are computed in
    tiles (:mod:`upconv.tiles`); ``.npy`` to ``.npy`` jobs that tile are
    streamed, never holding either array whole.
    """
    if settings.storage_options:  # in a worker process: the options the command was given
        from .storage import use_storage_options

        use_storage_options(settings.storage_options)
    fmt = format_for(output_path, settings.format_name)
    resolve_settings_kernel(settings)  # a bad kernel fails before any image is read
    source = _streamed_source(input_path) if (
        fmt == "npy" and input_path != "-" and _streams_to(output_path)) else None
    if source is not None:
        layout = check_npy_image(source, input_path, layout=settings.layout)
        # Streamed: rows in the file's own order (H first), written in the same layout;
        # other arrays are read whole, as any image.
        same_rows = layout in ("hw", "hwc") and output_layout(layout, settings.layout) == layout
        if source.streamable and same_rows:
            job = _plan_job(settings, source.shape, fmt, streamed=True)
            if job.tile_rows is not None:
                return _stream_npy(input_path, output_path, source, job, settings)
    picture = load_image(input_path, settings.max_pixels, settings.layout)
    # Alpha is an image file's (2 or 4 channels); an array's channels are all data.
    alpha = picture.layout is None and picture.has_alpha
    doubt = _layout_doubt(input_path, picture, settings.layout)
    if fmt == "npy":
        picture = replace(picture, layout=output_layout(picture.layout, settings.layout))
    job = _plan_job(settings, picture.samples.shape, fmt, alpha=alpha,
                    planes=picture.layout in ("chw", "nchw"))
    plan, stored = job.plan, picture.samples.dtype
    # The output's samples: the input's stored type (a .npy output keeps the float values).
    out_dtype = stored if fmt != "npy" or stored.kind == "f" else (
        to_float(picture.samples[:1, :1]).dtype)
    out_shape = plan.shape + (plan.channels,)
    band_rows = _band_rows(settings, job)
    samples: np.ndarray | RowChunks = picture.samples
    if band_rows is not None:  # held in chunks, each freed when the bands are past it
        samples = RowChunks.take(picture.samples, max(1, INPUT_CHUNK_BYTES // max(
            1, picture.samples[0].nbytes)))
    # Keep only the metadata (and the channel count) in the picture.
    picture = with_samples(picture, np.empty((0, 0) + samples.shape[2:], stored))
    # (the whole input array is now referenced by nothing but `samples`)
    full = settings.full_report
    summary_line = settings.summary_line and not job.feature_maps
    sampler = (summary_sampler(out_shape, plan.period, out_dtype)
               if summary_line and not full and plan.period is not None else None)
    kept = None  # the whole output, when the summary or the report measures all of it
    notes = list(job.notes) + ([doubt] if doubt else [])
    with image_writer(picture, out_shape, out_dtype, output_path, fmt, settings.save,
                      notes) as output:
        for start, rows in _output_bands(samples, job, band_rows, out_dtype, output.next_rows):
            output.write(rows)
            if sampler is not None:
                sampler.add_rows(start, rows)
            elif full or (summary_line and plan.period is not None):
                if rows.shape[0] == out_shape[0]:
                    kept = rows  # the whole image at once: measured as it is
                else:
                    if kept is None:
                        kept = np.empty(out_shape, out_dtype)
                    kept[start:start + rows.shape[0]] = rows
        # Measured before the file is renamed into place: writing is the job's last step.
        outcome = ScaleResult(input_path, output_path, (plan.shape[1], plan.shape[0]),
                              plan.name, notes=notes)
        if sampler is not None:
            outcome.checkerboard, outcome.score = summary_text(sampler.measure())
        elif job.feature_maps and not full:
            outcome.checkerboard = _feature_maps_summary(plan)
        else:
            _measure(outcome, kept, plan, settings)
    return outcome


def _streamed_source(input_path: str) -> NpyFile | None:
    """The ``.npy`` file (or object) at ``input_path``, to be read a band at a time if the
    job tiles; None for other inputs (and for an object that is not named ``.npy``, or
    whose size the service does not give: read whole, as any image)."""
    if not is_url(input_path):
        return NpyFile.open(input_path) if is_npy_file(input_path) else None
    if not input_path.lower().endswith(".npy"):
        return None
    return NpyFile.from_object(input_path)


def _streams_to(output_path: str) -> bool:
    """Whether a streamed ``.npy`` job can write ``output_path`` a band at a time: a file,
    a device or standard output, an S3 object (a multipart upload) or an Azure blob (a
    block list); other objects are gathered in memory and sent whole."""
    if not is_url(output_path):
        return True
    from .storage import uploads_in_parts

    return uploads_in_parts(output_path)


def _feature_maps_summary(plan: Resampling) -> str:
    """The summary's last part for feature maps, whose values are not grey levels."""
    text = "feature maps: not measured in grey levels"
    return text + (" (audit the layer: upconv kernel audit)"
                   if plan.method is Method.TRANSPOSE else "")


#: Bytes of float32 samples per band of an output computed band by band; outputs of more
#: than :data:`BIG_OUTPUT_BYTES` (as float32) get half-size bands, to bound their memory,
#: and smaller ones these, which cost fewer passes.
BAND_BYTES = 16 << 20
BIG_OUTPUT_BYTES = 256 << 20


def _layout_doubt(name: str, picture: Picture, option: str | None) -> str | None:
    """A note when a 3-D array read as H x W x C by default looks laid out C x H x W (its
    last axis longer than 4 and than its first), as PyTorch lays feature maps out."""
    height, width, channels = picture.samples.shape
    if option is None and picture.layout == "hwc" and channels > max(4, height):
        return (f"{name} was read as H x W x C = {height} x {width} x {channels}; if it is "
                "C x H x W, give --layout chw")
    return None


def output_layout(input_layout: str | None, option: str | None) -> str:
    """The layout of a ``.npy`` output: ``--layout`` if given (a 2-D array stays 2-D with
    ``hwc``, a 4-D one 4-D with ``chw``), else the input array's, else ``hwc``.

    Examples
    --------
    >>> output_layout("nchw", None), output_layout("hw", "chw"), output_layout(None, None)
    ('nchw', 'chw', 'hwc')
    """
    if option is None:
        return input_layout or "hwc"
    if option == "hwc":
        return "hw" if input_layout == "hw" else "hwc"
    return "nchw" if input_layout == "nchw" else "chw"


def _band_rows(settings: ScaleSettings, job: _Job) -> int | None:
    """Output rows per band: as ``--tile`` asked, else bands of about :data:`BAND_BYTES`
    for an output over :data:`~upconv.reporting.SAMPLE_ABOVE` pixels; None computes the
    output whole."""
    plan = job.plan
    if settings.tile is not None:
        return settings.tile
    if plan.shape[0] * plan.shape[1] <= SAMPLE_ABOVE:
        return None
    row_bytes = plan.shape[1] * plan.channels * 4
    band = BAND_BYTES if row_bytes * plan.shape[0] <= BIG_OUTPUT_BYTES else BAND_BYTES // 2
    period = plan.row_period
    return max(period, band // row_bytes // period * period)


def _output_bands(samples: np.ndarray | RowChunks, job: _Job, band_rows: int | None,
                  dtype: np.dtype, rows_to_fill: Callable[[int], np.ndarray | None]
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows)`` of the output as ``dtype`` samples, from the top: whole, or
    band by band. Each band is written where ``rows_to_fill(count)`` says (the output
    image's own rows), or into a new array where it says None.

    Band by band (``samples`` then a :class:`RowChunks`), each input window
    is converted to float on its own and interpolated rows are rounded into
    the output as they are computed, so no float copy of the whole input or
    output is ever made, and the input's chunks are freed as the bands pass
    them. For a spline method the input's rows are filtered along x once, in
    chunks, as the bands reach them (:class:`SplineRows`), rather than again
    in every window's halo.
    """
    plan = job.plan
    convert = (lambda rows: rows) if plan.method is Method.NEAREST else to_float

    def target(count: int) -> np.ndarray:
        rows = rows_to_fill(count)
        return np.empty((count, plan.shape[1], plan.channels), dtype) if rows is None else rows

    if band_rows is None:
        assert isinstance(samples, np.ndarray)
        values = resample(convert(samples), plan)
        yield 0, values if values.dtype == dtype else store_as(values, target(values.shape[0]))
        return
    assert isinstance(samples, RowChunks)
    spline = SplineRows.applies(plan)
    if spline:
        chunk = max(1, 2 * band_rows // plan.row_period)
        read = SplineRows(samples, plan.boundary, chunk, plan.threads).read
    else:
        def read(first: int, last: int) -> np.ndarray:
            return convert(samples.read(first, last))
    for band in tile_bands(plan.shape[0], plan.row_period, band_rows):
        yield band[0], resample_band(read, plan, band, x_filtered=spline,
                                     out=target(band[1] - band[0]))


#: Bytes of input per chunk of a banded job's :class:`RowChunks`.
INPUT_CHUNK_BYTES = 4 << 20
#: Inputs of at least this many bytes have :class:`RowChunks` hand freed pages back to the
#: system as each chunk is dropped.
TRIM_ABOVE = 32 << 20


class RowChunks:
    """An image's rows in chunks that are freed once the windows reading them move past.

    The bands of a job read windows that move down the image (each starts
    at or below the one before), so a chunk that ends above a window's first
    row is never read again: it is dropped, and its memory returned to the
    system (:func:`~upconv.memory.release_free_memory`). By the last band the
    input takes no memory, while the output has nearly all of it.

    Examples
    --------
    >>> rows = RowChunks.take(np.arange(10).reshape(10, 1, 1), 4)
    >>> rows.read(3, 6)[:, 0, 0].tolist(), rows.read(5, 10)[:, 0, 0].tolist()
    ([3, 4, 5], [5, 6, 7, 8, 9])
    >>> [chunk is None for chunk in rows.chunks]
    [True, False, False]
    """

    def __init__(self, chunks: list[np.ndarray], chunk_rows: int) -> None:
        self.chunks: list[np.ndarray | None] = list(chunks)
        self.chunk_rows = chunk_rows
        self.freed = 0  # bytes freed since the memory was last handed back
        # Handing pages back costs milliseconds a call: worth it for a big input only.
        self.trim = sum(c.nbytes for c in chunks) >= TRIM_ABOVE
        self.shape = (sum(c.shape[0] for c in chunks),) + chunks[0].shape[1:]

    @classmethod
    def take(cls, samples: np.ndarray, chunk_rows: int) -> RowChunks:
        """Copies of ``samples``' rows in chunks (the caller then lets go of ``samples``)."""
        return cls([samples[i:i + chunk_rows].copy()
                    for i in range(0, samples.shape[0], chunk_rows)], chunk_rows)

    def read(self, first: int, last: int) -> np.ndarray:
        """Rows ``[first, last)``; the chunks wholly above ``first`` are freed."""
        size = self.chunk_rows
        for index in range(first // size):
            chunk = self.chunks[index]
            if chunk is not None:
                self.freed += chunk.nbytes
                self.chunks[index] = None
        if self.freed and self.trim:  # glibc would keep the pages; the output needs them
            release_free_memory()
            self.freed = 0
        def chunk(index: int) -> np.ndarray:
            rows = self.chunks[index]
            if rows is None:
                raise ValueError(f"rows {first}-{last} were freed; windows must move down")
            return rows

        return _window(chunk, size, first, last)


class SplineRows:
    """A banded spline job's input rows, filtered along x in chunks as they are read.

    Windows move down the image (each starts at or below the one before), so
    only the chunks a window touches are kept: a chunk above the window is
    dropped. Each row is filtered once, as its chunk is first read, instead
    of once in every window whose halo reaches it.

    Examples
    --------
    >>> from upconv.options import Boundary
    >>> rows = SplineRows(RowChunks.take(np.ones((10, 3, 1), np.uint8), 2), Boundary.EDGE, 4)
    >>> rows.read(3, 6).shape, sorted(rows.chunks)
    ((3, 27, 1), [0, 1])
    >>> rows.read(5, 10).shape, sorted(rows.chunks)
    ((5, 27, 1), [1, 2])
    """

    def __init__(self, source: RowChunks, boundary: Boundary, chunk_rows: int,
                 threads: int | None = None) -> None:
        self.source, self.boundary, self.chunk_rows = source, boundary, chunk_rows
        self.threads = threads
        self.chunks: dict[int, np.ndarray] = {}

    @staticmethod
    def applies(plan: Resampling) -> bool:
        """Whether a plan's windows can be interpolated from rows filtered ahead: a spline
        method, edge or zero boundary, and no alpha or linear light (which come first)."""
        method = plan.method.interpolation if plan.method is not Method.TRANSPOSE else None
        return (method is not None and method.prefilter and not plan.identity and not plan.alpha
                and not plan.linear_light and plan.boundary is not Boundary.REFLECT)

    def read(self, first: int, last: int) -> np.ndarray:
        """Rows ``[first, last)`` as spline coefficients along x (:func:`x_coefficients`)."""
        size = self.chunk_rows
        for index in [i for i in self.chunks if i < first // size]:
            del self.chunks[index]

        def chunk(index: int) -> np.ndarray:
            if index not in self.chunks:
                top = index * size
                raw = self.source.read(top, min(top + size, self.source.shape[0]))
                self.chunks[index] = x_coefficients(raw, self.boundary, self.threads)
            return self.chunks[index]

        return _window(chunk, size, first, last)


def _window(chunk: Callable[[int], np.ndarray], size: int, first: int, last: int
            ) -> np.ndarray:
    """Rows ``[first, last)`` from chunks of ``size`` rows (``chunk(i)``: rows from i*size)."""
    pieces = [chunk(index)[max(first - index * size, 0):last - index * size]
              for index in range(first // size, -(-last // size))]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _npy_rows(source: NpyFile, name: str) -> Callable[[int, int], np.ndarray]:
    """A row reader for a streamed .npy: (rows, W, C) float values, as a whole load gives."""
    was_2d = len(source.shape) == 2

    def read_rows(first: int, last: int) -> np.ndarray:
        rows = to_float(npy_samples(source.read_rows(first, last), name))
        return rows[:, :, None] if was_2d else rows

    return read_rows


def compute_band(source: NpyFile, job: _Job, shape: tuple[int, ...], dtype: np.dtype,
                 band: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """One tile of a streamed job: output rows ``band`` as stored in an output of ``shape``,
    from the input ``source`` (its header read once, by the command); into ``out`` (of
    ``dtype``, rows x W x C) if given."""
    rows = resample_band(_npy_rows(source, source.name or source.path), job.plan, band,
                         out=out)
    rows = rows.astype(dtype, copy=False)
    return rows[:, :, 0] if len(shape) == 2 else rows


def upload_bands(source: NpyFile, job: _Job, shape: tuple[int, ...], dtype: np.dtype,
                 upload: PartUpload, header: bytes, middle_band: tuple[int, int],
                 part: tuple[int, list[tuple[int, int]]]) -> tuple[dict, np.ndarray | None]:
    """Compute the bands of one part of a streamed job's object and send the part (the
    first part starts with the ``.npy`` header); returns the part's receipt, and the
    middle band's rows if the part holds it (idempotent: a part sent again replaces it)."""
    number, bands = part
    width, channels = shape[1], (shape[2] if len(shape) == 3 else 1)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    start = len(header) if number == 1 else 0
    body = io.BytesIO()
    body.seek(start + sum(b - a for a, b in bands) * row_bytes - 1)
    body.write(b"\0")  # (its whole size at once: no growing copy by copy)
    body.seek(0)
    body.write(header[:start])
    middle = None
    with body.getbuffer() as part_bytes:  # each tile computed straight into the part
        for first, last in bands:
            rows = np.frombuffer(part_bytes, dtype, (last - first) * width * channels,
                                 start).reshape(last - first, width, channels)
            compute_band(source, job, shape, dtype, (first, last), out=rows)
            if (first, last) == middle_band:
                middle = rows[:, :, 0].copy() if len(shape) == 2 else rows.copy()
            start += rows.nbytes
            del rows
    body.seek(0)
    return upload.send(number, body), middle


def part_bands(bands: list[tuple[int, int]], row_bytes: int, header_bytes: int,
               part_size: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The bands of a streamed job grouped into the parts of an upload, numbered from 1:
    consecutive bands, each part at least ``part_size`` bytes but the last.

    Examples
    --------
    >>> part_bands([(0, 4), (4, 8), (8, 12), (12, 14)], row_bytes=10, header_bytes=5,
    ...            part_size=60)
    [(1, [(0, 4), (4, 8)]), (2, [(8, 12), (12, 14)])]
    """
    parts: list[tuple[int, list[tuple[int, int]]]] = []
    group: list[tuple[int, int]] = []
    size = header_bytes
    for band in bands:
        group.append(band)
        size += (band[1] - band[0]) * row_bytes
        if size >= part_size:
            parts.append((len(parts) + 1, group))
            group, size = [], 0
    if group:
        parts.append((len(parts) + 1, group))
    return parts


def write_band(source: NpyFile, target: NpyFile, job: _Job, band: tuple[int, int]) -> None:
    """Compute one tile of a streamed job and write it into the output file (idempotent)."""
    target.write_rows(band[0], compute_band(source, job, target.shape, target.dtype, band))


def _run_bands(task: Callable[[Any], Any], bands: list, settings: ScaleSettings,
               ordered: bool) -> Iterator[tuple[Any, Any]]:
    """``(band, task(band))`` for every band (or part), here in order or on Dask (in order
    if asked; the workers use the command's storage options)."""
    if settings.dask_address is None:
        for band in bands:
            yield band, task(band)
        return
    from .batch import options_with
    from .cluster import map_on_dask

    yield from map_on_dask(options_with(task, settings.storage_options), bands,
                           settings.dask_address, ordered=ordered)


def _stream_npy(input_path: str, output_path: str, source: NpyFile, job: _Job,
                settings: ScaleSettings) -> ScaleResult:
    """Tile an ``.npy`` into an ``.npy`` without holding either whole (here or on Dask).

    A file is filled band by band in place (in any order, by any worker) and
    committed atomically; an S3 object is sent as a multipart upload, and an
    Azure blob as blocks, whose parts (a few bands each) are computed and sent by
    any worker, made into the object when every part is there and given up
    otherwise; standard output, a device
    or a FIFO is sent the header and then each band in order, as the
    in-memory path would send the whole array. The input may be an object
    too, read a band at a time (:class:`~upconv.npy.NpyFile`).
    """
    was_2d = len(source.shape) == 2
    # The values' type as a whole load gives it (the same rule, on one sample).
    dtype = to_float(npy_samples(np.zeros(1, source.dtype), input_path)).dtype
    out_shape = job.plan.shape if was_2d and job.plan.channels == 1 else (
        job.plan.shape + (job.plan.channels,))
    assert job.tile_rows is not None
    bands = tile_bands(job.plan.shape[0], job.plan.row_period, job.tile_rows)
    middle_band = bands[len(bands) // 2]
    if is_url(output_path):
        source.check_values(input_path)
        from .storage import largest_part, part_size_for, uploading_parts

        header = npy_header(out_shape, dtype)
        row_bytes = math.prod(out_shape[1:]) * np.dtype(dtype).itemsize
        parts = part_bands(bands, row_bytes, len(header),
                           part_size_for(len(header) + out_shape[0] * row_bytes))
        biggest = max(sum(b - a for a, b in group) * row_bytes for _, group in parts)
        limit, in_words = largest_part(output_path)
        if biggest + len(header) > limit:
            raise BadInputError(f"{output_path}: tiles of {job.tile_rows} rows make parts of "
                                f"{biggest / 2**30:.1f} GiB, over {in_words}; give a smaller "
                                "--tile")
        with uploading_parts(output_path) as upload:
            task = functools.partial(upload_bands, source, job, out_shape, dtype, upload,
                                     header, middle_band)
            receipts = []
            for _, (receipt, rows) in _run_bands(task, parts, settings, ordered=False):
                receipts.append(receipt)
                if rows is not None:
                    middle = rows
            outcome = _streamed_result(input_path, output_path, job, middle, settings)
        finish_upload(upload, receipts)  # now, or with the command's other outputs
        return outcome
    if written_in_place(output_path):
        # Nothing sent can be taken back: every value is checked before the first byte.
        source.check_values(input_path, finite=True)
        task = functools.partial(compute_band, source, job, out_shape, dtype)
        with output_writer(output_path) as write:
            write(npy_header(out_shape, dtype))
            for band, rows in _run_bands(task, bands, settings, ordered=True):
                write(memoryview(np.ascontiguousarray(rows)).cast("B"))
                if band == middle_band:
                    middle = rows
    else:
        source.check_values(input_path)
        final = output_target(output_path)
        target = create_npy(final, out_shape, dtype, shown=output_path)
        try:
            task = functools.partial(write_band, source, target, job)
            for _ in _run_bands(task, bands, settings, ordered=False):
                pass
            middle = target.read_rows(*middle_band)
            sync_file(target.path, output_path)
            outcome = _streamed_result(input_path, output_path, job, middle, settings)
            finish(target.path, final, output_path)  # the job's last step
        except BaseException:
            discard(target.path)
            raise
        return outcome
    return _streamed_result(input_path, output_path, job, middle, settings)


def _streamed_result(input_path: str, output_path: str, job: _Job, middle: np.ndarray,
                     settings: ScaleSettings) -> ScaleResult:
    """A streamed job's result, its figure measured on the middle band."""
    outcome = ScaleResult(input_path, output_path, (job.plan.shape[1], job.plan.shape[0]),
                          job.plan.name, notes=list(job.notes))
    if job.feature_maps and not settings.full_report:
        outcome.checkerboard = _feature_maps_summary(job.plan)
        return outcome
    _measure(outcome, middle[:, :, None] if middle.ndim == 2 else middle, job.plan, settings)
    outcome.checkerboard += " (measured on the middle tile)"
    return outcome


def _measure(outcome: ScaleResult, result: np.ndarray, plan: Resampling,
             settings: ScaleSettings) -> None:
    """The output and its checkerboard figure come together: measure what was written."""
    if settings.full_report:
        outcome.report = report_about(result, plan.period, plan.kernel).with_file(
            shown(outcome.output), outcome.size, settings.method.value)
        board = outcome.report.checkerboard
        outcome.checkerboard = (
            f"checkerboard {board.score:.2f} grey levels ({board.verdict})"
            if board else "checkerboard n/a")
        outcome.score = board.score if board else None
    elif settings.summary_line:
        if plan.period is None:
            outcome.checkerboard = "checkerboard n/a (not a whole-number factor)"
        else:
            outcome.checkerboard, outcome.score = checkerboard_line(result, plan.period)


def scale_job(settings: ScaleSettings, job) -> ScaleResult:
    """:func:`scale_file` for a batch :class:`~upconv.batch.Job` (picklable with partial)."""
    if not is_url(job.output):  # objects need no folders
        os.makedirs(os.path.dirname(job.output) or ".", exist_ok=True)
    return scale_file(job.input, job.output, settings)


def with_dask(settings: ScaleSettings, address: str) -> ScaleSettings:
    """The settings with a streamed job's tiles sent to a Dask scheduler."""
    return replace(settings, dask_address=address)
