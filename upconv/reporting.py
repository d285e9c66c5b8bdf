"""Checkerboard reports about image files: the file layer of ``upconv report``.

:func:`report_file` reads an image (and a reference, and a kernel) and
measures it with :func:`upconv.report.build_report`; :func:`checkerboard_line`
is the cheaper figure every ``upconv scale`` prints. Plain data in and out
(a :class:`~upconv.report.Report` is a frozen, picklable value), so that
batches can run these in worker processes, which never import the renderers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .errors import UpconvError
from .fileio import shown
from .images import DEFAULT_MAX_PIXELS, load_image
from .kernel_files import resolve_kernel
from .kernels import Kernel
from .metrics import PeriodicPattern, SampledPattern, measure_pattern, verdict
from .report import Report, build_report, check_measurable, colour_channels
from .samples import to_float

__all__ = ["ReportSettings", "Report", "report_file", "report_job", "load_report_kernel",
           "checkerboard_line", "report_about", "summary_sampler", "summary_text", "SAMPLE_ABOVE"]


@dataclass(frozen=True)
class ReportSettings:
    """What ``upconv report`` was asked to measure, independent of the files.

    ``kernel`` is loaded once (:func:`load_report_kernel`) and analysed with
    every image; its stride is the period when ``factor`` is not given.
    """

    factor: int | None = None
    kernel: Kernel | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


def load_report_kernel(spec: str, factor: int | None) -> Kernel:
    """A kernel for a report: a built-in (for ``factor``, default 2) or a file."""
    return resolve_kernel(spec, factor, builtin_stride=2)


def report_file(path: str, settings: ReportSettings, reference: str | None = None
                ) -> tuple[Report, np.ndarray]:
    """The report about one image file (and the kernel, if any), and the image measured.

    ``reference`` is a ground-truth image file for PSNR and SSIM.
    """
    kernel = settings.kernel
    factor = settings.factor if settings.factor is not None else (
        kernel.stride if kernel is not None else None)
    image = to_float(load_image(path, settings.max_pixels).samples)
    truth = (to_float(load_image(reference, settings.max_pixels).samples)
             if reference is not None else None)
    report = build_report(image, factor, kernel, truth)
    return report.with_file(shown(path), (image.shape[1], image.shape[0])), image


def report_job(settings: ReportSettings, job) -> Report:
    """:func:`report_file` for a batch job (picklable with partial)."""
    return report_file(job.input, settings)[0]


def checkerboard_line(samples: np.ndarray, stride: int) -> tuple[str, float | None]:
    """The summary's figure: the pattern at the known period (no spectrum, no search).

    Examples
    --------
    >>> flat = np.full((64, 64, 3), 128, np.uint8)
    >>> checkerboard_line(flat, 2)
    ('checkerboard 0.00 grey levels (none)', 0.0)
    """
    values = colour_channels(samples)
    try:
        check_measurable(values.shape, stride)
    except UpconvError:
        return "checkerboard n/a (image too small)", None
    sampler = summary_sampler(values.shape, stride, values.dtype)
    if sampler is None:
        pattern = measure_pattern(values, stride)
    else:
        sampler.add_rows(0, values)
        pattern = sampler.measure()
    return summary_text(pattern)


#: Images with more pixels than this get their one-line figure from sampled tiles.
SAMPLE_ABOVE = 1 << 21


def summary_sampler(shape: tuple[int, ...], stride: int,
                    dtype: np.dtype | type = np.float32) -> SampledPattern | None:
    """For a big image, the tiles the one-line figure is measured on (None: measure all).

    Over :data:`SAMPLE_ABOVE` pixels (2 MP), 4 x 4 tiles of 256 pixels spread
    evenly over the image (1 MP in all, :class:`~upconv.metrics.SampledPattern`),
    so the figure costs about 40 ms for any size. ``report`` measures every pixel.
    """
    if shape[0] * shape[1] <= SAMPLE_ABOVE:
        return None
    try:
        return SampledPattern((shape[0], shape[1], shape[2]), stride, dtype=dtype)
    except ValueError:  # too narrow to sample: measured whole
        return None


def summary_text(pattern: PeriodicPattern) -> tuple[str, float]:
    """The summary's text for a measured pattern, and its score."""
    name = verdict(pattern.score) if pattern.significant else "none"
    return f"checkerboard {pattern.score:.2f} grey levels ({name})", pattern.score


def report_about(samples: np.ndarray, stride: int | None, kernel: Kernel | None) -> Report:
    """The full report about an output; the kernel part even when the image is too small."""
    try:
        return build_report(to_float(samples), stride, kernel)
    except UpconvError as exc:
        return replace(build_report(None, stride, kernel), checkerboard_error=str(exc))
