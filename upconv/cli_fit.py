"""``upconv fit`` and ``upconv degrade``: learning kernels from image pairs."""

from __future__ import annotations

import json
import math
import os

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli import CONTEXT, EPILOG, _enum_choice, _refuse_clobbering_input, _warn, main
from .degrade import Degradation, degrade_picture
from .errors import UpconvError
from .fit import fit_kernel, pair_factor
from .images import (
    DEFAULT_MAX_PIXELS,
    Picture,
    format_for,
    from_float,
    load_image,
    save_image,
    to_float,
    with_samples,
)
from .kernels import KERNEL_SUFFIXES, Kernel
from .metrics import psnr
from .options import Boundary
from .scaling import scale


def _colour_samples(picture: Picture, name: str, notes: list[str]) -> np.ndarray:
    """The picture's colour channels (alpha is not part of the fit)."""
    samples = picture.samples
    if picture.has_alpha:
        notes.append(f"{name}: alpha channel ignored")
        samples = samples[:, :, :-1]
    return samples


@main.command("fit", context_settings=CONTEXT, epilog=EPILOG)
@click.argument("inputs", nargs=-1, required=True, metavar="LOW HIGH [LOW HIGH ...]")
@click.option("-o", "--output", "output_path", required=True, metavar="KERNEL",
              help="Kernel file to write (.json keeps stride, boundary and statistics).")
@click.option("-f", "--factor", type=click.IntRange(2), default=None,
              help="The factor s (default: from the sizes; 2 with --degrade).")
@click.option("--size", type=click.IntRange(1), default=None,
              help="Kernel size K (K x K). [default: 6s]")
@click.option("--ridge", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Ridge penalty, relative to the mean diagonal of each phase's Gram matrix.")
@click.option("--per-channel", is_flag=True,
              help="One kernel per channel instead of one shared by all channels.")
@click.option("--checkerboard-free", is_flag=True,
              help="Constrain all s*s polyphase sums to be equal: a flat input stays flat.")
@click.option("-b", "--boundary", type=_enum_choice(Boundary), default=Boundary.EDGE.value,
              show_default=True, help="Border extension, as the kernel will be applied.")
@click.option("--margin", type=click.IntRange(0), default=0, show_default=True,
              help="LOW pixels at each border left out of the fit.")
@click.option("--augment", is_flag=True,
              help="Also fit on the rotated and flipped copies of every pair (8x the data).")
@click.option("--degrade", "degradation", type=_enum_choice(Degradation), default=None,
              help="Fit from HIGH images alone, making each LOW by this downscaling.")
@click.option("--validate", "validation", type=(str, str), multiple=True,
              metavar="LOW HIGH",
              help="After fitting, compare PSNR with bicubic and bilinear on this pair "
                   "(repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse larger images.")
def fit_command(inputs: tuple[str, ...], output_path: str, factor: int | None,
                size: int | None, ridge: float, per_channel: bool, checkerboard_free: bool,
                boundary: str, margin: int, augment: bool, degradation: str | None,
                validation: tuple[tuple[str, str], ...], as_json: bool,
                max_pixels: int) -> None:
    """Fit a transposed-convolution kernel by least squares on LOW/HIGH pairs.

    The kernel minimises the summed squared error of upsampling each LOW
    image into its HIGH image (all pairs pool their data). The factor comes
    from the sizes; HIGH may be up to s - 1 pixels larger than s * LOW (the
    extra right and bottom pixels are cropped). With --degrade, every input
    is a HIGH image and its LOW is made by that downscaling.

    \\b
    Examples:
      upconv fit low.png high.png -o k.json
      upconv fit --degrade area a.png b.png c.png -o k.json --validate l.png h.png
      upconv fit low*.png high*.png ... --checkerboard-free --ridge 1e-4 -o k.json
    """
    notes: list[str] = []
    suffix = os.path.splitext(output_path)[1].lower()
    if output_path == "-" or suffix not in KERNEL_SUFFIXES:
        raise click.BadParameter(f"{output_path!r}: a kernel file needs one of the suffixes "
                                 f"{', '.join(KERNEL_SUFFIXES)} (.json keeps everything)",
                                 param_hint="-o")
    for path in inputs:
        _refuse_clobbering_input(path, output_path)
    if degradation is None and len(inputs) % 2:
        raise click.UsageError("give LOW HIGH pairs (an even number of images), or --degrade "
                               "with HIGH images")
    if degradation is not None:
        factor = factor or 2
        names = [(f"{path} (degraded)", path) for path in inputs]
    else:
        names = list(zip(inputs[0::2], inputs[1::2], strict=True))

    def pairs():
        for low_name, high_name in names:
            picture = load_image(high_name, max_pixels)
            if degradation is not None:
                # As `upconv degrade`: alpha-weighted (premultiplied) averaging.
                low = degrade_picture(picture, factor, degradation)
                low = low[:, :, :-1] if picture.has_alpha else low
            high = _colour_samples(picture, high_name, notes)
            if degradation is None:
                low = _colour_samples(load_image(low_name, max_pixels), low_name, notes)
            if degradation is not None and (high.shape[0] % factor or high.shape[1] % factor):
                notes.append(f"{high_name}: cropped {high.shape[1] % factor} column(s) and "
                             f"{high.shape[0] % factor} row(s) at the right and bottom to a "
                             f"multiple of {factor}")
                high = high[:high.shape[0] // factor * factor, :high.shape[1] // factor * factor]
            yield _checked_pair(low, high, low_name, high_name, factor, notes)

    kernel = fit_kernel(pairs(), factor=factor, size=size, ridge=ridge,
                        per_channel=per_channel, checkerboard_free=checkerboard_free,
                        boundary=boundary, margin=margin, degradation=degradation,
                        augment=augment)
    kernel.info["trained_on"] = list(inputs)
    notes += kernel.info.get("fit_notes", [])
    if suffix != ".json":
        kept = "the stride and boundary" if suffix == ".npz" else "only the weights"
        notes.append(f"{output_path}: this format keeps {kept}; use .json to keep the "
                     "alignment, degradation and fit statistics too")
    summary = _summary(kernel, output_path)
    if validation:  # before writing: a failed validation leaves no kernel file behind
        summary["validation"] = [_validate(kernel, low, high, max_pixels)
                                 for low, high in validation]
    kernel.save(output_path)
    for note in notes:
        _warn(note)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    _print_summary(summary, Console(stderr=True, highlight=False))


def _checked_pair(low: np.ndarray, high: np.ndarray, low_name: str, high_name: str,
                  factor: int | None, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if low.shape[2] != high.shape[2]:
        raise UpconvError(f"{low_name} has {low.shape[2]} channels but {high_name} has "
                          f"{high.shape[2]}; convert one of them")
    try:
        s = pair_factor(low.shape, high.shape, factor)
    except UpconvError as exc:
        raise UpconvError(f"{low_name} ({low.shape[1]}x{low.shape[0]}) and {high_name} "
                          f"({high.shape[1]}x{high.shape[0]}) do not pair: {exc}") from None
    extra = (high.shape[0] - s * low.shape[0], high.shape[1] - s * low.shape[1])
    if any(extra):
        notes.append(f"{high_name}: cropped {extra[1]} column(s) and {extra[0]} row(s) at the "
                     f"right and bottom to {s} x {low_name}'s size")
    return low, high


def _summary(kernel: Kernel, path: str) -> dict:
    stats = kernel.info["fit"]
    return {"kernel": path, "shape": list(kernel.weights.shape), "stride": kernel.stride,
            "alignment": kernel.alignment, "boundary": kernel.info["boundary"],
            "degradation": kernel.info.get("degradation"),
            "checkerboard_free": kernel.info["checkerboard_free"],
            "spread": kernel.spread(), **stats}


def _validate(kernel: Kernel, low_path: str, high_path: str, max_pixels: int) -> dict:
    notes: list[str] = []
    low = to_float(_colour_samples(load_image(low_path, max_pixels), low_path, notes))
    high = to_float(_colour_samples(load_image(high_path, max_pixels), high_path, notes))
    if low.shape[2] != high.shape[2]:
        raise UpconvError(f"--validate {low_path} {high_path}: {low.shape[2]} and "
                          f"{high.shape[2]} colour channels; they must match")
    kernel.check_channels(low.shape[2])
    s = kernel.stride
    try:
        pair_factor(low.shape, high.shape, s)
    except UpconvError as exc:
        raise UpconvError(f"--validate {low_path} {high_path}: {exc}") from None
    high = high[:s * low.shape[0], :s * low.shape[1]]
    result: dict = {"low": low_path, "high": high_path}
    for name, method, extra in (("fitted", "transpose", {"kernel": kernel}),
                                ("bicubic", "bicubic", {}), ("bilinear", "bilinear", {})):
        up = scale(low, s, method=method, **extra)
        result[name] = psnr(np.clip(up, 0, 1), high)
    return result


def _print_summary(summary: dict, console: Console) -> None:
    table = Table(title="fitted kernel", show_header=False)
    rows = [("written to", escape(summary["kernel"])),
            ("shape / stride", f"{' x '.join(map(str, summary['shape']))} / {summary['stride']}"),
            ("alignment, boundary", f"{summary['alignment']}, {summary['boundary']}"),
            ("degradation", str(summary["degradation"] or "given LOW images")),
            ("pairs / samples", f"{summary['pairs']} / {summary['samples']}"),
            ("training PSNR", _db(summary["training_psnr"])),
            ("RMS residual", f"{summary['rms_residual']:.4g}"),
            ("condition number", f"{summary['condition_number']:.3g}"),
            ("ridge", f"{summary['ridge']:g}"),
            ("phase-sum spread", f"{summary['spread']:.3g}"
             + (" (checkerboard-free)" if summary["checkerboard_free"] else ""))]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if summary.get("validation"):
        check = Table(title="validation PSNR (dB)")
        for column in ("pair", "fitted", "bicubic", "bilinear"):
            check.add_column(column, justify="left" if column == "pair" else "right")
        for row in summary["validation"]:
            check.add_row(escape(f"{row['low']} -> {row['high']}"), _db(row["fitted"]),
                          _db(row["bicubic"]), _db(row["bilinear"]))
        console.print(check)


def _db(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "exact"
    return f"{value:.2f} dB"


@main.command("degrade", context_settings=CONTEXT, epilog=EPILOG)
@click.argument("input_path", metavar="HIGH")
@click.argument("output_path", metavar="LOW")
@click.option("-f", "--factor", type=click.IntRange(2), required=True, help="The factor s.")
@click.option("-m", "--method", type=_enum_choice(Degradation), default=Degradation.AREA.value,
              show_default=True, help="area (block mean), bicubic (Pillow, antialiased) or "
                                      "gaussian (sigma s/2).")
@click.option("--format", "format_name", metavar="FORMAT", help="Output format.")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse larger images.")
def degrade_command(input_path: str, output_path: str, factor: int, method: str,
                    format_name: str | None, max_pixels: int) -> None:
    """Downscale HIGH by an integer factor into LOW, as `upconv fit --degrade` does.

    \\b
    Examples:
      upconv degrade photo.png low.png --factor 2
      upconv degrade - - -f 3 -m gaussian --format png < a.png > a_low.png
    """
    fmt = format_for(output_path, format_name)
    _refuse_clobbering_input(input_path, output_path)
    picture = load_image(input_path, max_pixels)
    height, width = picture.samples.shape[:2]
    if height < factor or width < factor:
        raise UpconvError(f"{input_path}: a {width}x{height} image is smaller than the factor "
                          f"{factor}")
    if height % factor or width % factor:
        _warn(f"{input_path}: cropped {width % factor} column(s) and {height % factor} row(s) "
              f"at the right and bottom to a multiple of {factor}")
    low = degrade_picture(picture, factor, method)
    if fmt != "npy" and picture.samples.dtype.kind != "f":
        low = from_float(low, picture.samples.dtype)
    for note in save_image(with_samples(picture, low), output_path, fmt):
        _warn(note)
