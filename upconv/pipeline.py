"""One file through upconv: load, scale, save, measure. Shared by the CLI, batches and workers.

Everything here is plain data in and out (no click, no printing), so that a
batch can run :func:`scale_file` in worker processes or on a Dask cluster and
report what happened in the parent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UpconvError
from .images import (
    check_writable,
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
from .report import build_report, check_measurable, load_report_kernel
from .scaling import default_kernel, output_shape_for, scale, stride_from_factor
from .transpose import output_size

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
    max_pixels: int = 2 ** 28
    threads: int | None = None
    full_report: bool = False
    figure: bool = True


@dataclass
class ScaleResult:
    """What happened to one file."""

    input: str
    output: str
    size: tuple[int, int]
    method: str
    figure: str = ""
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
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
    report when ``settings.full_report``.
    """
    fmt = format_for(output_path, settings.format_name)
    kernel = resolve_settings_kernel(settings)
    picture = load_image(input_path, settings.max_pixels)
    height, width = picture.samples.shape[:2]
    if kernel is not None:
        kernel = kernel.for_image(picture.samples.shape[2],
                                  picture.has_alpha and not kernel.mixes_channels)
        geometry = kernel.padding if settings.padding is None else settings.padding
        pad_y, pad_x = geometry if isinstance(geometry, tuple) else (geometry, geometry)
        out_h = output_size(height, kernel.shape[0], kernel.stride, pad_y,
                            settings.output_padding)
        out_w = output_size(width, kernel.shape[1], kernel.stride, pad_x,
                            settings.output_padding)
        if min(out_h, out_w) < 1:
            raise UpconvError(f"padding {geometry} leaves no output for a {width}x{height} "
                              "input")
    else:
        out_h, out_w = output_shape_for((height, width), settings.factor, settings.size)
    if out_h * out_w > settings.max_pixels:
        raise UpconvError(f"the output would be {out_w}x{out_h} = {out_w * out_h} pixels, over "
                          f"the limit of {settings.max_pixels} (raise it with --max-pixels)")
    check_writable(fmt, out_w, out_h)
    notes = []
    if out_h < height or out_w < width:
        notes.append("the output is smaller than the input; upconv does not low-pass filter "
                     "before shrinking, so fine detail will alias")
    channels_out = kernel.output_channels(picture.samples.shape[2]) if kernel else None
    if channels_out is not None and channels_out > 4 and fmt != "npy":
        raise UpconvError(f"the kernel makes {channels_out} channels; only .npy output can "
                          "hold more than 4")

    samples = picture.samples
    if settings.method is not Method.NEAREST:
        samples = to_float(samples)
    if kernel is not None:
        result = scale(samples, method=settings.method, boundary=settings.boundary,
                       kernel=kernel, padding=settings.padding,
                       output_padding=settings.output_padding,
                       post_kernel=settings.post_kernel, alpha=picture.has_alpha,
                       linear_light=settings.linear_light, threads=settings.threads)
    else:
        result = scale(samples, output_shape=(out_h, out_w), method=settings.method,
                       boundary=settings.boundary or "edge", alpha=picture.has_alpha,
                       linear_light=settings.linear_light, threads=settings.threads)
    if result.ndim == 2:
        result = result[:, :, None]
    if result.dtype != picture.samples.dtype and fmt != "npy":
        # Back to the stored depth; .npy output keeps the exact float result.
        result = from_float(result, picture.samples.dtype)
    notes += save_image(with_samples(picture, result), output_path, fmt, settings.quality)

    method_name = settings.method.value + (f" ({kernel.name})" if kernel is not None else "")
    outcome = ScaleResult(input_path, output_path, (out_w, out_h), method_name, notes=notes)
    # The output and its artifact figure come together: measure what was written.
    stride = kernel.stride if kernel is not None else whole_factor(height, width, out_h, out_w)
    if settings.full_report:
        outcome.report = report_about(result, stride, kernel)
        outcome.report.update({"image": output_path, "size": [out_w, out_h],
                               "method": settings.method.value})
        board = outcome.report["checkerboard"]
        outcome.figure = (f"checkerboard {board['score']:.2f} grey levels ({board['verdict']})"
                          if board else "checkerboard n/a")
    elif settings.figure:
        outcome.figure = (quick_checkerboard(result, stride) if stride is not None
                          else "checkerboard n/a (not a whole-number factor)")
    return outcome


def whole_factor(height: int, width: int, out_h: int, out_w: int) -> int | None:
    """The period of a possible pattern: the factor, when it is one whole number >= 2."""
    if out_h % height or out_w % width or out_h // height != out_w // width:
        return None
    factor = out_h // height
    return factor if factor >= 2 else None


def _measurable(samples: np.ndarray) -> np.ndarray:
    values = to_float(samples)
    values = values if samples.dtype.kind != "f" else np.clip(values, 0, 1)
    return values[:, :, :-1] if values.shape[2] in (2, 4) else values


def quick_checkerboard(samples: np.ndarray, stride: int) -> str:
    """The summary's figure: the pattern at the known period (no spectrum, no search)."""
    values = _measurable(samples)
    try:
        check_measurable(values.shape, stride)
    except UpconvError:
        return "checkerboard n/a (image too small)"
    pattern = measure_pattern(values, stride)
    name = verdict(pattern.score) if pattern.significant else "none"
    return f"checkerboard {pattern.score:.2f} grey levels ({name})"


def report_about(samples: np.ndarray, stride: int | None, kernel: Kernel | None) -> dict:
    """The full report about an output; the kernel part even when the image is too small."""
    try:
        return build_report(_measurable(samples), stride, kernel)
    except UpconvError as exc:
        report = build_report(None, stride, kernel)
        report["checkerboard_error"] = str(exc)
        return report


def scale_job(settings: ScaleSettings, job) -> ScaleResult:
    """:func:`scale_file` for a batch :class:`~upconv.batch.Job` (picklable with partial)."""
    import os

    os.makedirs(os.path.dirname(job.output) or ".", exist_ok=True)
    return scale_file(job.input, job.output, settings)


@dataclass(frozen=True)
class ReportSettings:
    """What ``upconv report`` was asked to measure, independent of the files."""

    factor: int | None = None
    kernel_spec: str | None = None
    max_pixels: int = 2 ** 28


def report_file(path: str, settings: ReportSettings, reference: str | None = None) -> dict:
    """The report about one image file (and the kernel, if any)."""
    kernel = (load_report_kernel(settings.kernel_spec, settings.factor)
              if settings.kernel_spec else None)
    factor = settings.factor if settings.factor is not None else (
        kernel.stride if kernel is not None else None)
    image = to_float(load_image(path, settings.max_pixels).samples)
    truth = to_float(load_image(reference, settings.max_pixels).samples) if reference else None
    report = build_report(image, factor, kernel, truth)
    report["image"] = path
    report["size"] = [image.shape[1], image.shape[0]]
    return report


def report_job(settings: ReportSettings, job) -> dict:
    """:func:`report_file` for a batch job (picklable with partial)."""
    return report_file(job.input, settings)
