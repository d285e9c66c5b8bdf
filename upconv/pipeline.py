"""One file through upconv: load, scale, save, measure. Shared by the CLI, batches and workers.

Everything here is plain data in and out (no click, no printing), so that a
batch can run :func:`scale_file` in worker processes or on a Dask cluster and
report what happened in the parent.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UpconvError
from .images import (
    DEFAULT_MAX_PIXELS,
    NPY_MAGIC,
    check_writable,
    commit,
    discard,
    format_for,
    from_float,
    load_image,
    save_image,
    to_float,
    with_samples,
)
from .kernels import Kernel, resolve_kernel
from .metrics import measure_pattern, verdict
from .options import Method
from .report import build_report, check_measurable, colour_channels, load_report_kernel
from .scaling import default_kernel, output_shape_for, post_weights, scale, stride_from_factor
from .tiles import (
    NpyFile,
    bands,
    create_npy,
    halo_for,
    scale_in_tiles,
    tile,
    tile_rows_for,
)
from .transpose import output_geometry

__all__ = ["ScaleSettings", "ScaleResult", "scale_file"]


@dataclass(frozen=True)
class ScaleSettings:
    """What ``upconv scale`` was asked to do, independent of the files."""

    method: Method = Method.BICUBIC
    factor: tuple[float, float] | None = None
    size: tuple[int | None, int | None] | None = None
    boundary: str | None = None
    kernel_spec: str | None = None
    padding: int | None = None
    output_padding: int = 0
    post_kernel: str | None = None
    linear_light: bool = False
    format_name: str | None = None
    quality: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None
    #: False: max_pixels is the default, which does not limit streamed .npy outputs
    max_pixels_given: bool = False
    full_report: bool = False
    figure: bool = True
    tile: int | None = None
    #: single-file jobs only: compute a streamed .npy's tiles on this Dask scheduler
    dask_address: str | None = None


@dataclass
class ScaleResult:
    """What happened to one file."""

    input: str
    output: str
    size: tuple[int, int]
    method: str
    figure: str = ""
    score: float | None = None  # the checkerboard score behind the figure
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``OUTPUT WxH, method, figure``: the line every ``upconv scale`` run ends with."""
        name = "stdout" if self.output == "-" else self.output
        return f"{name} {self.size[0]}x{self.size[1]}, {self.method}, {self.figure}"


@functools.lru_cache(maxsize=8)
def _kernel(spec: str | None, stride: int | None) -> Kernel:
    return resolve_kernel(spec or default_kernel(stride), stride)


def resolve_settings_kernel(settings: ScaleSettings) -> Kernel | None:
    """The transpose kernel, loaded once per process."""
    if settings.method is not Method.TRANSPOSE:
        return None
    stride = stride_from_factor(settings.factor) if settings.factor is not None else None
    return _kernel(settings.kernel_spec, stride)


def scale_file(input_path: str, output_path: str, settings: ScaleSettings) -> ScaleResult:
    """Upsample one image file into another; raise UpconvError on bad input.

    The output is written atomically; the result carries the notes (things
    the user should hear about), the one-line artifact figure, and the full
    report when ``settings.full_report``. Big outputs are computed in tiles
    (:mod:`upconv.tiles`); ``.npy`` to ``.npy`` jobs that tile are streamed,
    never holding either array whole.
    """
    fmt = format_for(output_path, settings.format_name)
    kernel = resolve_settings_kernel(settings)
    if fmt == "npy" and input_path != "-" and _is_npy(input_path):
        header = NpyFile.open(input_path)
        if len(header.shape) in (2, 3) and header.dtype.kind in "fu":
            plan = _plan(settings, kernel, header.shape, fmt, streamed=True)
            if plan.tile_rows is not None:
                return _stream_npy(input_path, output_path, header, settings, plan)
    picture = load_image(input_path, settings.max_pixels)
    plan = _plan(settings, kernel, picture.samples.shape, fmt)
    samples = picture.samples
    if settings.method is not Method.NEAREST:
        samples = to_float(samples)
    alpha = picture.has_alpha and not (plan.kernel is not None and plan.kernel.mixes_channels)
    if plan.tile_rows is None:
        result = _upsample(samples, settings, plan, alpha, plan.shape)
    else:
        result = None
        for start, piece in _tiles(lambda a, b: samples[a:b], samples.shape[0], settings, plan,
                                   alpha):
            if result is None:  # the first tile tells the channels and dtype
                result = np.empty(plan.shape + piece.shape[2:], piece.dtype)
            result[start:start + piece.shape[0]] = piece
    if result.ndim == 2:
        result = result[:, :, None]
    if result.dtype != picture.samples.dtype and fmt != "npy":
        # Back to the stored depth; .npy output keeps the exact float result.
        result = from_float(result, picture.samples.dtype)
    notes = plan.notes + save_image(with_samples(picture, result), output_path, fmt,
                                    settings.quality)
    outcome = ScaleResult(input_path, output_path, (plan.shape[1], plan.shape[0]),
                          plan.method_name, notes=notes)
    _measure(outcome, result, plan, settings)
    return outcome


@dataclass
class _Plan:
    """Sizes and choices for one file, settled before any pixel is computed."""

    shape: tuple[int, int]
    kernel: Kernel | None
    stride: int | None  # the whole-number factor, if there is one
    tile_rows: int | None
    method_name: str
    notes: list[str]
    post: np.ndarray | str | None = None  # the post-kernel, loaded once


def _plan(settings: ScaleSettings, kernel: Kernel | None, shape: tuple[int, ...],
          fmt: str, streamed: bool = False) -> _Plan:
    height, width = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    if kernel is not None:
        kernel = kernel.for_image(channels, channels in (2, 4) and not kernel.mixes_channels)
        (out_h, out_w), (pad_y, _) = output_geometry(kernel, (height, width),
                                                      settings.padding,
                                                      settings.output_padding)
        stride = kernel.stride if pad_y is None else None  # tiles need the centred geometry
    else:
        out_h, out_w = output_shape_for((height, width), settings.factor, settings.size)
        stride = whole_factor(height, width, out_h, out_w)
    # A streamed .npy never sits in memory: only a --max-pixels the user gave limits it.
    limited = settings.max_pixels_given or not streamed
    if limited and out_h * out_w > settings.max_pixels:
        raise UpconvError(f"the output would be {out_w}x{out_h} = {out_w * out_h} pixels, over "
                          f"the limit of {settings.max_pixels} (raise it with --max-pixels)")
    check_writable(fmt, out_w, out_h)
    notes = []
    if out_h < height or out_w < width:
        notes.append("the output is smaller than the input; upconv does not low-pass filter "
                      "before shrinking, so fine detail will alias")
    channels_out = kernel.output_channels(channels) if kernel else channels
    if channels_out > 4 and fmt != "npy":
        raise UpconvError(f"the kernel makes {channels_out} channels; only .npy output can "
                          "hold more than 4")
    tile_rows = tile_rows_for(settings.tile, out_h * out_w)
    if tile_rows is not None and stride is None:
        if settings.tile is not None:
            raise UpconvError("tiling needs a whole-number factor, the same for both axes "
                              "(and the centred geometry for transpose)")
        tile_rows = None  # automatic tiling only where it is exact
    method_name = settings.method.value + (f" ({kernel.name})" if kernel is not None else "")
    post = post_weights(settings.post_kernel) if settings.post_kernel is not None else None
    return _Plan((out_h, out_w), kernel, stride, tile_rows, method_name, notes, post)


def _upsample(samples: np.ndarray, settings: ScaleSettings, plan: _Plan, alpha: bool,
              shape: tuple[int, int]) -> np.ndarray:
    """The resampling itself, on a whole image or a tile's window."""
    if plan.kernel is not None:
        return scale(samples, method=settings.method, boundary=settings.boundary,
                     kernel=plan.kernel, padding=settings.padding,
                     output_padding=settings.output_padding, post_kernel=plan.post,
                     alpha=alpha, linear_light=settings.linear_light, threads=settings.threads)
    return scale(samples, output_shape=shape, method=settings.method,
                 boundary=settings.boundary or "edge", alpha=alpha,
                 linear_light=settings.linear_light, threads=settings.threads)


def _tile_geometry(settings: ScaleSettings, plan: _Plan, alpha: bool):
    """The halo and the window upsampler of a tiled job."""
    s = plan.stride
    post_rows = 0 if plan.post is None else (
        3 if isinstance(plan.post, str) else max(plan.post.shape))
    halo = halo_for(None if plan.kernel is not None else settings.method.order,
                    plan.kernel.shape[0] if plan.kernel is not None else None, s, post_rows)
    width = plan.shape[1] // s

    def upsample(window: np.ndarray) -> np.ndarray:
        result = _upsample(window, settings, plan, alpha, (s * window.shape[0], s * width))
        return result[:, :, None] if result.ndim == 2 else result

    return halo, upsample


def _tiles(read_rows, height: int, settings: ScaleSettings, plan: _Plan, alpha: bool):
    halo, upsample = _tile_geometry(settings, plan, alpha)
    return scale_in_tiles(read_rows, height, plan.stride, upsample, plan.shape[0],
                          plan.tile_rows, halo)


def _npy_rows(source: NpyFile, name: str):
    """A row reader for a streamed .npy: (rows, W, C) values in [0, 1], float."""
    planar = len(source.shape) == 2
    dtype = np.float64 if source.dtype == np.float64 else np.float32

    def read_rows(first: int, last: int) -> np.ndarray:
        rows = source.read_rows(first, last)
        rows = rows[:, :, None] if planar else rows
        if rows.dtype.kind == "u":
            return (to_float(rows) if rows.dtype in (np.uint8, np.uint16)
                    else (rows / np.iinfo(rows.dtype).max).astype(np.float32))
        if not np.isfinite(rows).all():
            raise UpconvError(f"{name}: the image contains NaN or infinite values")
        return rows.astype(dtype, copy=False)

    return read_rows


def write_band(input_path: str, target: NpyFile, settings: ScaleSettings, plan: _Plan,
               band: tuple[int, int]) -> None:
    """Compute one tile of a streamed job and write it into the output file (idempotent)."""
    source = NpyFile.open(input_path)
    planar = len(source.shape) == 2
    channels = 1 if planar else source.shape[2]
    alpha = channels in (2, 4) and not (plan.kernel is not None and plan.kernel.mixes_channels)
    halo, upsample = _tile_geometry(settings, plan, alpha)
    rows = tile(_npy_rows(source, input_path), source.shape[0], plan.stride, upsample, band,
                halo).astype(target.dtype, copy=False)
    target.write_rows(band[0], rows[:, :, 0] if planar else rows)


def _stream_npy(input_path: str, output_path: str, source: NpyFile, settings: ScaleSettings,
                plan: _Plan) -> ScaleResult:
    """Tile an ``.npy`` into an ``.npy`` without holding either whole (here or on Dask)."""
    planar = len(source.shape) == 2
    channels = 1 if planar else source.shape[2]
    dtype = np.float64 if source.dtype == np.float64 else np.float32
    out_shape = plan.shape if planar else plan.shape + (plan.kernel.output_channels(channels)
                                                        if plan.kernel else channels,)
    target = create_npy(output_path, out_shape, dtype)
    try:
        tiles = bands(plan.shape[0], plan.stride, plan.tile_rows)
        task = functools.partial(write_band, input_path, target, settings, plan)
        if settings.dask_address is not None:
            from .cluster import map_on_dask

            for _ in map_on_dask(task, tiles, settings.dask_address):
                pass
        else:
            for band in tiles:
                task(band)
        middle = target.read_rows(*tiles[len(tiles) // 2])
        commit(target.path, os.path.realpath(output_path))
    except BaseException:
        discard(target.path)
        raise
    outcome = ScaleResult(input_path, output_path, (plan.shape[1], plan.shape[0]),
                          plan.method_name, notes=plan.notes)
    _measure(outcome, middle[:, :, None] if planar else middle, plan, settings)
    outcome.figure += " (measured on the middle tile)"
    return outcome


def _is_npy(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(NPY_MAGIC)) == NPY_MAGIC
    except OSError:
        return False


def _measure(outcome: ScaleResult, result: np.ndarray, plan: _Plan,
             settings: ScaleSettings) -> None:
    """The output and its artifact figure come together: measure what was written."""
    if settings.full_report:
        outcome.report = report_about(result, plan.stride, plan.kernel)
        outcome.report.update({"image": outcome.output, "size": list(outcome.size),
                               "method": settings.method.value})
        board = outcome.report["checkerboard"]
        outcome.figure = (f"checkerboard {board['score']:.2f} grey levels ({board['verdict']})"
                          if board else "checkerboard n/a")
        outcome.score = board["score"] if board else None
    elif settings.figure:
        if plan.stride is None:
            outcome.figure = "checkerboard n/a (not a whole-number factor)"
        else:
            outcome.figure, outcome.score = quick_checkerboard(result, plan.stride)


def whole_factor(height: int, width: int, out_h: int, out_w: int) -> int | None:
    """The period of a possible pattern: the factor, when it is one whole number >= 2."""
    if out_h % height or out_w % width or out_h // height != out_w // width:
        return None
    factor = out_h // height
    return factor if factor >= 2 else None


def quick_checkerboard(samples: np.ndarray, stride: int) -> tuple[str, float | None]:
    """The summary's figure: the pattern at the known period (no spectrum, no search)."""
    values = colour_channels(samples)
    try:
        check_measurable(values.shape, stride)
    except UpconvError:
        return "checkerboard n/a (image too small)", None
    pattern = measure_pattern(values, stride)
    name = verdict(pattern.score) if pattern.significant else "none"
    return f"checkerboard {pattern.score:.2f} grey levels ({name})", pattern.score


def report_about(samples: np.ndarray, stride: int | None, kernel: Kernel | None) -> dict:
    """The full report about an output; the kernel part even when the image is too small."""
    try:
        return build_report(to_float(samples), stride, kernel)
    except UpconvError as exc:
        report = build_report(None, stride, kernel)
        report["checkerboard_error"] = str(exc)
        return report


def scale_job(settings: ScaleSettings, job) -> ScaleResult:
    """:func:`scale_file` for a batch :class:`~upconv.batch.Job` (picklable with partial)."""
    os.makedirs(os.path.dirname(job.output) or ".", exist_ok=True)
    return scale_file(job.input, job.output, settings)


@dataclass(frozen=True)
class ReportSettings:
    """What ``upconv report`` was asked to measure, independent of the files."""

    factor: int | None = None
    kernel_spec: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


def report_file(path: str, settings: ReportSettings, reference: str | None = None
                ) -> tuple[dict, np.ndarray]:
    """The report about one image file (and the kernel, if any), and the image measured.

    ``reference`` is a ground-truth image file for PSNR and SSIM.
    """
    kernel = (load_report_kernel(settings.kernel_spec, settings.factor)
              if settings.kernel_spec else None)
    factor = settings.factor if settings.factor is not None else (
        kernel.stride if kernel is not None else None)
    image = to_float(load_image(path, settings.max_pixels).samples)
    truth = (to_float(load_image(reference, settings.max_pixels).samples)
             if reference is not None else None)
    report = build_report(image, factor, kernel, truth)
    report["image"] = path
    report["size"] = [image.shape[1], image.shape[0]]
    return report, image


def report_job(settings: ReportSettings, job) -> dict:
    """:func:`report_file` for a batch job (picklable with partial)."""
    return report_file(job.input, settings)[0]
