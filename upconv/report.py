"""The checkerboard-artifact report: the measurements, for pipelines and for people.

:func:`build_report` measures an image (and optionally a kernel and a
reference) and returns a :class:`Report`, a frozen value whose
:meth:`~Report.to_json` is the ``--json`` document. This module imports no
renderer: :mod:`upconv.render` draws a :class:`Report` as rich tables, and
the heat map and the spectrum as pictures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from .errors import BadInputError
from .kernels import Kernel
from .layers import layer_figures, phase_sums
from .metrics import (
    PeriodicPattern,
    detect_period,
    grey,
    measure_pattern,
    psnr,
    spectral_peak_db,
    ssim,
    verdict,
)

__all__ = ["Report", "CheckerboardFigures", "PeriodCandidate", "KernelAnalysis",
           "ReferenceFigures", "build_report", "kernel_report", "kernel_summary",
           "measurable_colour", "colour_channels", "check_measurable", "SCORE_UNIT",
           "MIN_PERIODS"]

SCORE_UNIT = "8-bit grey levels (RMS amplitude of the periodic pattern)"
#: Smallest image side, in periods, that a measurement needs.
MIN_PERIODS = 8


def measurable_colour(image: np.ndarray) -> np.ndarray:
    """The colour channels as float32 clipped to [0, 1]: what an image file would hold."""
    return np.clip(colour_channels(image), 0, 1).astype(np.float32, copy=False)


def colour_channels(image: np.ndarray) -> np.ndarray:
    """Drop alpha: (H, W, 2) gray+alpha -> gray, (H, W, 4) -> RGB."""
    return image[:, :, :-1] if image.shape[2] in (2, 4) else image


def check_measurable(shape: tuple[int, ...], factor: int | None) -> None:
    """Refuse factors and images the measurement cannot work with."""
    height, width = shape[:2]
    if factor is not None:
        if factor < 2:
            raise BadInputError(f"a periodic pattern needs a factor of at least 2, not {factor}")
        if factor > min(height, width):
            raise BadInputError(f"factor {factor} is larger than the {width}x{height} image")
        if min(height, width) < MIN_PERIODS * factor:
            raise BadInputError(f"a {width}x{height} image is too small to measure a period of "
                              f"{factor} (it needs {MIN_PERIODS * factor} pixels a side)")
    elif min(height, width) < MIN_PERIODS * 2:
        raise BadInputError(f"a {width}x{height} image is too small to measure (it needs "
                          f"{MIN_PERIODS * 2} pixels a side)")


# ------------------------------------------------------------------ the value


def _optional() -> Any:
    """A field left out of :meth:`_JsonValue.to_dict` while it is None."""
    return field(default=None, metadata={"optional": True})


class _JsonValue:
    """``to_dict`` and ``to_json`` for the report dataclasses: every field, in order."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict: fields in declaration order, optional ones only when set."""
        return {f.name: _json_ready(getattr(self, f.name)) for f in fields(self)
                if not (f.metadata.get("optional") and getattr(self, f.name) is None)}

    def to_json(self, indent: int | None = 1) -> str:
        """:meth:`to_dict` as JSON text (``json.dumps`` with ``indent``)."""
        return json.dumps(self.to_dict(), indent=indent)


def _json_ready(value: Any) -> Any:
    if isinstance(value, _JsonValue):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_json_ready(item) for item in value]
    if isinstance(value, dict):  # JSON object keys are strings
        return {str(key): _json_ready(item) for key, item in value.items()}
    return value


def _nested(values: Any) -> Any:
    """An array (or nested lists) as nested tuples of Python numbers."""
    values = values.tolist() if isinstance(values, np.ndarray) else values
    return tuple(_nested(v) for v in values) if isinstance(values, (list, tuple)) else values


@dataclass(frozen=True, kw_only=True)
class PeriodCandidate(_JsonValue):
    """The strongest pattern period detection measured when none was significant."""

    period: int
    score: float  # grey levels RMS, noise subtracted
    noise: float


@dataclass(frozen=True, kw_only=True)
class CheckerboardFigures(_JsonValue):
    """The stride-periodic pattern of an image (values in 8-bit grey levels).

    ``phase_means`` is ``(s, s)`` nested tuples, centred, of the channel
    where the pattern is strongest. ``scores_by_period`` (period -> score,
    on the grey image) is set only when the period was searched for, and
    ``strongest_candidate`` only when no period was significant.
    """

    score: float
    verdict: str
    unit: str = SCORE_UNIT
    period: int
    phase_means: tuple[tuple[float, ...], ...]
    spectral_peak_db: float
    noise: float
    significant: bool
    scores_by_period: dict[int, float] | None = _optional()
    strongest_candidate: PeriodCandidate | None = _optional()


@dataclass(frozen=True, kw_only=True)
class KernelAnalysis(_JsonValue):
    """A kernel's polyphase sums and their spread (None: infinite, the sums average 0)."""

    name: str
    shape: tuple[int, ...]
    stride: int | None
    phase_sums: tuple[Any, ...]  # nested tuples, (..., s, s)
    spread: float | None
    flat_stays_flat: bool
    #: how much brighter a flat image comes out (the mean phase sum; per channel for 3-D
    #: and 4-D kernels): 1 for a kernel that keeps the brightness
    dc_gain: float | tuple[float, ...] | None = None
    #: the layer's checkerboard figures, per output channel
    #: (:meth:`upconv.layers.LayerFigures.as_dict`)
    layer: dict | None = None


#: A DC gain within this of 1 keeps the brightness: white moves by less than half an
#: 8-bit grey level (fitted kernels land within about 1e-4 of 1).
DC_GAIN_TOLERANCE = 0.5 / 255


def keeps_brightness(gains: Any) -> bool:
    """Whether DC gains (one or per channel) are 1 to within :data:`DC_GAIN_TOLERANCE`."""
    return bool(np.all(np.abs(np.asarray(gains, dtype=np.float64) - 1) <= DC_GAIN_TOLERANCE))


def dc_gain_note(kernel: Kernel) -> str | None:
    """A warning when a kernel changes the brightness of a flat image, else None.

    Examples
    --------
    >>> "comes out 2.25 times as bright" in dc_gain_note(Kernel(np.ones((3, 3)), stride=2))
    True
    >>> dc_gain_note(Kernel(np.full((4, 4), 0.25), stride=2)) is None
    True
    """
    gains = np.atleast_1d(kernel.dc_gain())
    if keeps_brightness(gains):
        return None
    shown = ", ".join(f"{g:.4g}" for g in gains)
    return (f"{kernel.name}: a flat image comes out {shown} times as bright (its DC gain, the "
            "mean of its phase sums, is not 1; 8-bit outputs clip)")


@dataclass(frozen=True, kw_only=True)
class ReferenceFigures(_JsonValue):
    """How close the image is to a ground truth (PSNR None: identical)."""

    psnr: float | None  # dB, peak 1
    ssim: float
    channels: str  # "gray" or "R, G, B": what the means are over


@dataclass(frozen=True, kw_only=True)
class Report(_JsonValue):
    """What :func:`build_report` measured: the ``--json`` document as a value.

    Attributes
    ----------
    factor : int or None
        The period measured: given, the kernel's stride, or detected (None
        when detection found nothing significant).
    factor_detected : bool
    checkerboard : CheckerboardFigures or None
        None in a kernel-only report.
    kernel, reference : KernelAnalysis, ReferenceFigures, or None
        Set when a kernel or a reference was given.
    checkerboard_error, image, size, method : optional
        Set by the file layer (:mod:`upconv.reporting`, ``scale --report``):
        why the image could not be measured, the file, its ``(width,
        height)``, the scaling method. Left out of :meth:`to_dict` while None.

    Notes
    -----
    :meth:`to_dict` writes every field of these dataclasses in declaration
    order (optional ones, declared with ``_optional()``, only when set), so
    adding a metric is a field, a line in :func:`upconv.render.print_report`,
    and a test. A contrast figure, say: ``contrast: float`` in
    :class:`CheckerboardFigures` (filled by :func:`build_report`), then
    ``table.add_row("contrast", f"{board.contrast:.3f}")``, then a test of
    its value; the JSON gains ``checkerboard.contrast`` by itself. Values are
    stored JSON-ready (tuples for arrays, None for an infinite spread or PSNR).

    Examples
    --------
    >>> report = build_report(None, kernel=Kernel(np.ones((3, 3)), stride=2))
    >>> report.kernel.phase_sums, report.kernel.flat_stays_flat
    (((1.0, 2.0), (2.0, 4.0)), False)
    >>> list(report.with_file("out.png", (640, 480)).to_dict())
    ['factor', 'factor_detected', 'checkerboard', 'kernel', 'reference', 'image', 'size']
    """

    factor: int | None
    factor_detected: bool = False
    checkerboard: CheckerboardFigures | None = None
    kernel: KernelAnalysis | None = None
    reference: ReferenceFigures | None = None
    checkerboard_error: str | None = _optional()
    image: str | None = _optional()
    size: tuple[int, int] | None = _optional()
    method: str | None = _optional()

    def with_file(self, image: str, size: tuple[int, int], method: str | None = None
                  ) -> Report:
        """The report with the file it is about, its ``(width, height)`` and the method."""
        return replace(self, image=image, size=tuple(size), method=method)


# ------------------------------------------------------------------ measuring

def kernel_report(kernel: Kernel) -> KernelAnalysis:
    """The kernel's own analysis: its polyphase sums and their spread.

    Examples
    --------
    >>> from upconv.kernels import builtin_kernel
    >>> analysis = kernel_report(builtin_kernel("bilinear", 2))
    >>> analysis.phase_sums, analysis.spread, analysis.flat_stays_flat
    (((1.0, 1.0), (1.0, 1.0)), 0.0, True)
    """
    spread = kernel.spread()
    layer = layer_figures(kernel.weights, kernel.stride).as_dict() if kernel.stride else None
    return KernelAnalysis(name=kernel.name, shape=tuple(kernel.weights.shape),
                          stride=kernel.stride, phase_sums=_nested(kernel.phase_sums()),
                          spread=spread if math.isfinite(spread) else None,  # no JSON inf
                          flat_stays_flat=spread == 0.0,
                          dc_gain=_gain(kernel) if kernel.stride else None, layer=layer)


def _gain(kernel: Kernel) -> float | tuple[float, ...]:
    gain = np.asarray(kernel.dc_gain())
    return float(gain) if gain.ndim == 0 else _nested(gain)


def kernel_summary(kernel: Kernel) -> dict:
    """What ``kernel show`` reports, as plain data (the ``--json`` document)."""
    s = kernel.stride
    summary: dict = {"name": kernel.name, "shape": list(kernel.weights.shape),
                     "stride": s, "alignment": kernel.alignment, "padding": kernel.padding,
                     "weights": kernel.weights.tolist()}
    if s is not None:
        analysis = kernel_report(kernel).to_dict()  # phase sums, spread, flat_stays_flat
        sums = np.asarray(analysis["phase_sums"])
        summary.update({
            "phases": [{"phase": [p, q], "weights": kernel.sub_kernel(p, q).tolist(),
                        "sum": sums[..., p, q].tolist()} for p in range(s) for q in range(s)],
            "phase_sums": analysis["phase_sums"],
            "spread": analysis["spread"],
            "flat_stays_flat": analysis["flat_stays_flat"],
            "dc_gain": analysis["dc_gain"],
            "half_pixel_aligned": kernel.padding is None and all(
                (k - s) % 2 == 0 for k in kernel.shape),
            "layer": analysis["layer"],
        })
        if kernel.mixes_channels:  # (C_in, C_out, s, s): which input feeds which pattern
            summary["phase_sums_per_pair"] = phase_sums(kernel.weights, s,
                                                        kernel.phase_offsets()).tolist()
    return summary


def build_report(image: np.ndarray | None, factor: int | None = None,
                 kernel: Kernel | None = None, reference: np.ndarray | None = None
                 ) -> Report:
    """Measure the stride-periodic pattern of an image, and more.

    Parameters
    ----------
    image : ndarray (H, W, C) in [0, 1], or None for a kernel-only report
    factor : int, optional
        The period s; detected (2 to 8) when not given.
    kernel : Kernel, optional
        Adds the kernel's polyphase analysis.
    reference : ndarray, optional
        A ground-truth image of the same size: adds PSNR and SSIM.

    Returns
    -------
    Report
        ``report.to_json()`` is the ``--json`` document (see the README for
        every key).

    Examples
    --------
    >>> board = (np.indices((64, 64)).sum(axis=0) % 2 * 2.0 - 1.0) * 3 / 255
    >>> report = build_report((0.5 + board)[:, :, None])
    >>> report.factor, report.factor_detected, report.checkerboard.verdict
    (2, True, 'visible')
    >>> round(report.checkerboard.score, 1)
    3.0
    """
    analysis = kernel_report(kernel) if kernel is not None else None
    if image is None:
        return Report(factor=factor, kernel=analysis)
    colour = measurable_colour(image)
    check_measurable(colour.shape, factor)
    searched = factor is None
    candidates: list[PeriodicPattern] = []
    if searched:
        factor, candidates = detect_period(colour)
        # Nothing significant: the score is 0; the strongest candidate is shown apart.
        strongest = max(candidates, key=lambda f: f.score, default=None)
        period = factor or (strongest.period if strongest is not None else 2)
    else:
        period = factor
    pattern = measure_pattern(colour, period)
    no_period = factor is None
    board = CheckerboardFigures(
        score=0.0 if no_period else float(pattern.score),
        verdict=verdict(pattern.score) if pattern.significant and not no_period else "none",
        period=pattern.period,
        phase_means=_nested(pattern.phase_means),
        spectral_peak_db=float(spectral_peak_db(grey(colour), pattern.period)),
        noise=float(pattern.noise),
        significant=bool(pattern.significant),
        # what detection measured, on the grey image
        scores_by_period={f.period: float(f.score) for f in candidates} if searched else None,
        strongest_candidate=PeriodCandidate(period=pattern.period, score=float(pattern.score),
                                            noise=float(pattern.noise)) if no_period else None)
    return Report(factor=factor, factor_detected=searched and not no_period, checkerboard=board,
                  kernel=analysis, reference=_reference_figures(colour, image, reference))


def _reference_figures(colour: np.ndarray, image: np.ndarray, reference: np.ndarray | None
                       ) -> ReferenceFigures | None:
    if reference is None:
        return None
    reference = colour_channels(reference)
    if reference.shape[:2] != image.shape[:2]:
        raise BadInputError(f"the reference is {reference.shape[1]}x{reference.shape[0]} but "
                          f"the image is {image.shape[1]}x{image.shape[0]}; they must match")
    if reference.shape[2] != colour.shape[2]:
        raise BadInputError(f"the reference has {reference.shape[2]} colour channels, the "
                          f"image {colour.shape[2]}")
    return ReferenceFigures(psnr=_finite(psnr(colour, reference)),
                            ssim=ssim(colour, reference),
                            channels="gray" if colour.shape[2] == 1 else "R, G, B")


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value
