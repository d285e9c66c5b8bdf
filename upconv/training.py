"""Fitting kernels from image files: the file layer of ``upconv fit`` and ``upconv degrade``.

Plain functions that a notebook can call with paths: :func:`fit_files` loads,
degrades, crops and pairs the training images and fits a kernel;
:func:`validate_kernel` compares it with bicubic and bilinear on a held-out
pair; :func:`degrade_file` makes a LOW image from a HIGH one. None of them
prints: warnings come back as notes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .colour import premultiply, unpremultiply
from .degrade import Degradation, degrade
from .errors import BadInputError, UpconvError
from .fit import fit_kernel, pair_factor
from .images import (
    DEFAULT_MAX_PIXELS,
    Picture,
    format_for,
    image_shape,
    load_image,
    save_image,
    with_samples,
)
from .kernel_files import KERNEL_SUFFIXES, save_kernel
from .kernels import Kernel
from .metrics import psnr
from .samples import from_float, to_float
from .scaling import scale

__all__ = ["FitSettings", "FitResult", "fit_files", "pair_inputs", "validate_kernel",
           "degrade_picture",
           "degrade_file", "kernel_suffix"]


@dataclass(frozen=True)
class FitSettings:
    """How ``upconv fit`` fits, independent of the files (see :func:`upconv.fit_kernel`)."""

    factor: int | None = None
    size: int | None = None
    ridge: float = 0.0
    per_channel: bool = False
    checkerboard_free: bool = False
    boundary: str = "edge"
    margin: int = 0
    augment: bool = False
    #: fit from HIGH images alone, making each LOW by this downscaling
    degradation: Degradation | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class FitResult:
    """A fitted kernel, its summary (the ``--json`` document) and what the user should hear."""

    kernel: Kernel
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def kernel_suffix(path: str) -> str:
    """The kernel file suffix of ``path``, or an error listing the ones upconv writes.

    Examples
    --------
    >>> kernel_suffix("fitted/K.JSON")
    '.json'
    """
    suffix = "" if path == "-" else os.path.splitext(path)[1].lower()
    if suffix not in KERNEL_SUFFIXES:
        raise BadInputError(f"{path!r}: a kernel file needs one of the suffixes "
                            f"{', '.join(KERNEL_SUFFIXES)} (.json keeps everything)")
    return suffix


def fit_files(inputs: Sequence[str], output_path: str, settings: FitSettings,
              validation: Sequence[tuple[str, str]] = ()) -> FitResult:
    """Fit a kernel on image files and write it to ``output_path``.

    ``inputs`` are LOW HIGH pairs (LOW1 HIGH1 LOW2 HIGH2 ...), or with
    ``settings.degradation`` HIGH images alone. Each ``validation`` pair is
    checked before the kernel is written, so a failed validation leaves no
    file behind.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> high = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    >>> np.save(folder / "high.npy", high)
    >>> result = fit_files([str(folder / "high.npy")], str(folder / "k.json"),
    ...                    FitSettings(size=4, degradation=Degradation.AREA))
    >>> result.kernel.shape, result.summary["stride"], (folder / "k.json").exists()
    ((4, 4), 2, True)
    """
    suffix = kernel_suffix(output_path)
    if settings.degradation is None and len(inputs) % 2:
        raise BadInputError("give LOW HIGH pairs (an even number of images), or --degrade "
                            "with HIGH images")
    notes: list[str] = []
    factor = settings.factor
    if settings.degradation is not None:
        factor = factor or 2
        names = [(f"{path} (degraded)", path) for path in inputs]
    else:
        names = pair_inputs(inputs, settings.max_pixels)
    kernel = fit_kernel(_training_pairs(names, factor, settings, notes), factor=factor,
                        size=settings.size, ridge=settings.ridge,
                        per_channel=settings.per_channel,
                        checkerboard_free=settings.checkerboard_free,
                        boundary=settings.boundary, margin=settings.margin,
                        degradation=settings.degradation.value if settings.degradation
                        else None, augment=settings.augment)
    kernel.info["trained_on"] = list(inputs)
    notes += kernel.info.get("fit_notes", [])
    if suffix != ".json":
        kept = "the stride and boundary" if suffix == ".npz" else "only the weights"
        notes.append(f"{output_path}: this format keeps {kept}; use .json to keep the "
                     "alignment, degradation and fit statistics too")
    summary = fit_summary(kernel, output_path)
    if validation:
        summary["validation"] = [validate_kernel(kernel, low, high, settings.max_pixels, notes)
                                 for low, high in validation]
    save_kernel(kernel, output_path)
    return FitResult(kernel, summary, notes)


def pair_inputs(paths: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS
                ) -> list[tuple[str, str]]:
    """Pair LOW and HIGH images: alternating (LOW1 HIGH1 LOW2 HIGH2), or halves (all LOWs,
    then all HIGHs in the same order, as a shell expands ``low*.png high*.png``).

    The layout is told from the images' sizes, read from their headers: each
    HIGH is a whole factor times its LOW (up to ``s - 1`` pixels more). When
    neither layout pairs every image, the alternating one is kept, and fitting
    says which pair does not match.
    """
    alternating = [(paths[i], paths[i + 1]) for i in range(0, len(paths) - 1, 2)]
    if len(paths) <= 2:
        return alternating
    sizes = {path: image_shape(path, max_pixels) for path in paths}
    half = len(paths) // 2
    halves = [(paths[i], paths[i + half]) for i in range(half)]

    def pairs_up(pairs: list[tuple[str, str]]) -> bool:
        for low, high in pairs:
            try:
                pair_factor(sizes[low], sizes[high])
            except UpconvError:
                return False
        return True

    return halves if not pairs_up(alternating) and pairs_up(halves) else alternating


def _training_pairs(names: list[tuple[str, str]], factor: int | None, settings: FitSettings,
                    notes: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Load (and degrade) each pair as it is needed: one pair in memory at a time."""
    for low_name, high_name in names:
        picture = load_image(high_name, settings.max_pixels)
        high = _colour_samples(picture, high_name, notes)
        if settings.degradation is not None:
            assert factor is not None
            low = degrade_picture(picture, factor, settings.degradation)
            low = low[:, :, :-1] if picture.has_alpha else low
            if high.shape[0] % factor or high.shape[1] % factor:
                notes.append(f"{high_name}: cropped {high.shape[1] % factor} column(s) and "
                             f"{high.shape[0] % factor} row(s) at the right and bottom to a "
                             f"multiple of {factor}")
                high = high[:high.shape[0] // factor * factor,
                            :high.shape[1] // factor * factor]
        else:
            low = _colour_samples(load_image(low_name, settings.max_pixels), low_name, notes)
        yield _checked_pair(low, high, low_name, high_name, factor, notes)


def _colour_samples(picture: Picture, name: str, notes: list[str]) -> np.ndarray:
    """The picture's colour channels (alpha is not part of the fit)."""
    if picture.has_alpha:
        notes.append(f"{name}: alpha channel ignored")
        return picture.samples[:, :, :-1]
    return picture.samples


def _checked_pair(low: np.ndarray, high: np.ndarray, low_name: str, high_name: str,
                  factor: int | None, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if low.shape[2] != high.shape[2]:
        raise BadInputError(f"{low_name} has {low.shape[2]} channels but {high_name} has "
                            f"{high.shape[2]}; convert one of them")
    try:
        s = pair_factor(low.shape, high.shape, factor)
    except UpconvError as exc:
        raise BadInputError(f"{low_name} ({low.shape[1]}x{low.shape[0]}) and {high_name} "
                            f"({high.shape[1]}x{high.shape[0]}) do not pair: {exc}") from None
    extra = (high.shape[0] - s * low.shape[0], high.shape[1] - s * low.shape[1])
    if any(extra):
        notes.append(f"{high_name}: cropped {extra[1]} column(s) and {extra[0]} row(s) at the "
                     f"right and bottom to {s} x {low_name}'s size")
    return low, high


def fit_summary(kernel: Kernel, path: str) -> dict[str, Any]:
    """What ``upconv fit --json`` prints about a fitted kernel written to ``path``."""
    stats = kernel.info["fit"]
    return {"kernel": path, "shape": list(kernel.weights.shape), "stride": kernel.stride,
            "alignment": kernel.alignment, "boundary": kernel.info["boundary"],
            "degradation": kernel.info.get("degradation"),
            "checkerboard_free": kernel.info["checkerboard_free"],
            "spread": kernel.spread(), **stats}


def validate_kernel(kernel: Kernel, low_path: str, high_path: str,
                    max_pixels: int = DEFAULT_MAX_PIXELS,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """PSNR of the kernel on a held-out LOW/HIGH pair, next to bicubic and bilinear.

    Warnings (an alpha channel left out) are appended to ``notes``.
    """
    notes = [] if notes is None else notes
    low = to_float(_colour_samples(load_image(low_path, max_pixels), low_path, notes))
    high = to_float(_colour_samples(load_image(high_path, max_pixels), high_path, notes))
    if low.shape[2] != high.shape[2]:
        raise BadInputError(f"--validate {low_path} {high_path}: {low.shape[2]} and "
                            f"{high.shape[2]} colour channels; they must match")
    kernel.check_channels(low.shape[2])
    s = kernel.stride
    assert s is not None
    try:
        pair_factor(low.shape, high.shape, s)
    except UpconvError as exc:
        raise BadInputError(f"--validate {low_path} {high_path}: {exc}") from None
    high = high[:s * low.shape[0], :s * low.shape[1]]
    result: dict[str, Any] = {"low": low_path, "high": high_path}
    for name, method, extra in (("fitted", "transpose", {"kernel": kernel}),
                                ("bicubic", "bicubic", {}), ("bilinear", "bilinear", {})):
        up = scale(low, s, method=method, **extra)
        result[name] = psnr(np.clip(up, 0, 1), high)
    return result


def degrade_picture(picture: Picture, factor: int, method: Degradation | str = "area"
                    ) -> np.ndarray:
    """Degrade a loaded picture's samples to float; alpha images are averaged premultiplied.

    Colour is weighted by coverage (as upsampling does), so the colour of
    transparent pixels does not bleed into the LOW image.
    """
    values = to_float(picture.samples)
    if picture.has_alpha:
        return unpremultiply(degrade(premultiply(values), factor, method))
    return degrade(values, factor, method)


def degrade_file(input_path: str, output_path: str, factor: int,
                 method: Degradation | str = "area", format_name: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[str]:
    """Downscale the image file HIGH into LOW, as ``upconv fit --degrade`` does; notes back."""
    fmt = format_for(output_path, format_name)
    picture = load_image(input_path, max_pixels)
    height, width = picture.samples.shape[:2]
    if height < factor or width < factor:
        raise BadInputError(f"{input_path}: a {width}x{height} image is smaller than the "
                            f"factor {factor}")
    notes = []
    if height % factor or width % factor:
        notes.append(f"{input_path}: cropped {width % factor} column(s) and {height % factor} "
                     f"row(s) at the right and bottom to a multiple of {factor}")
    low = degrade_picture(picture, factor, method)
    if fmt != "npy" and picture.samples.dtype.kind != "f":
        low = from_float(low, picture.samples.dtype)
    return notes + save_image(with_samples(picture, low), output_path, fmt)
