"""``upconv fit`` and ``upconv degrade``: learning kernels from image pairs."""

from __future__ import annotations

import json
from typing import Any

import click

from ..degrade import Degradation
from ..options import Boundary
from ..training import FitSettings, degrade_file, fit_files, kernel_suffix
from .common import (
    CONTEXT,
    FILE_COMMAND_EPILOG,
    STRIDE,
    enum_choice,
    max_pixels_option,
    overwrite_option,
    prepare_destinations,
    storage_option,
    warn,
)


@click.command("fit", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("inputs", nargs=-1, required=True, metavar="LOW HIGH [LOW HIGH ...]")
@click.option("-o", "--output", "output_path", required=True, metavar="KERNEL",
              help="Kernel file to write (.json keeps stride, boundary and statistics).")
@click.option("-f", "--factor", type=STRIDE, default=None, metavar="S",
              help="The factor s (default: from the sizes; 2 with --degrade).")
@click.option("--size", type=click.IntRange(1), default=None,
              help="Kernel size K (K x K). [default: 6s]")
@click.option("--ridge", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Ridge penalty, relative to the mean diagonal of each phase's Gram matrix.")
@click.option("--per-channel", is_flag=True,
              help="One kernel per channel instead of one shared by all channels.")
@click.option("--checkerboard-free", is_flag=True,
              help="Constrain all s*s polyphase sums to be equal: a flat input stays flat.")
@click.option("-b", "--boundary", type=enum_choice(Boundary), default=Boundary.EDGE.value,
              show_default=True, help="Border extension, as the kernel will be applied.")
@click.option("--margin", type=click.IntRange(0), default=0, show_default=True,
              help="LOW pixels at each border left out of the fit.")
@click.option("--augment", is_flag=True,
              help="Also fit on the rotated and flipped copies of every pair (8x the data).")
@click.option("--degrade", "degradation", type=enum_choice(Degradation), default=None,
              help="Fit from HIGH images alone, making each LOW by this downscaling.")
@click.option("--validate", "validation", type=(str, str), multiple=True,
              metavar="LOW HIGH",
              help="After fitting, compare PSNR with bicubic and bilinear on this pair "
                   "(repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@max_pixels_option()
@storage_option
@overwrite_option
def fit_command(inputs: tuple[str, ...], output_path: str, factor: int | None,
                size: int | None, ridge: float, per_channel: bool, checkerboard_free: bool,
                boundary: str, margin: int, augment: bool, degradation: str | None,
                validation: tuple[tuple[str, str], ...], as_json: bool,
                max_pixels: int, overwrite: bool) -> None:
    """Fit a transposed-convolution kernel by least squares on LOW/HIGH pairs.

    The kernel minimises the summed squared error of upsampling each LOW
    image into its HIGH image (all pairs pool their data). Pairs are given
    as LOW1 HIGH1 LOW2 HIGH2 ..., or all LOWs then all HIGHs (as a shell
    expands low*.png high*.png); the sizes tell which. The factor comes
    from the sizes; HIGH may be up to s - 1 pixels larger than s * LOW (the
    extra right and bottom pixels are cropped). With --degrade, every input
    is a HIGH image and its LOW is made by that downscaling.

    \b
    Examples:
      upconv fit low.png high.png -o k.json
      upconv fit --degrade area a.png b.png c.png -o k.json --validate l.png h.png
      upconv fit low*.png high*.png --checkerboard-free --ridge 1e-4 -o k.json
    """
    try:
        kernel_suffix(output_path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-o") from None
    prepare_destinations([output_path], [*inputs, *(p for pair in validation for p in pair)],
                         overwrite)
    if degradation is None and len(inputs) % 2:
        raise click.UsageError("give LOW HIGH pairs (an even number of images), or --degrade "
                               "with HIGH images")
    settings = FitSettings(factor=factor, size=size, ridge=ridge, per_channel=per_channel,
                           checkerboard_free=checkerboard_free, boundary=boundary,
                           margin=margin, augment=augment,
                           degradation=Degradation(degradation) if degradation else None,
                           max_pixels=max_pixels)
    result = fit_files(inputs, output_path, settings, validation)
    for note in result.notes:
        warn(note)
    if as_json:
        click.echo(json.dumps(result.summary, indent=1))
    from rich.console import Console

    from ..render import print_fit_summary

    print_fit_summary(result.summary, Console(stderr=True, highlight=False))


@click.command("degrade", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("input_path", metavar="HIGH")
@click.argument("output_path", metavar="LOW")
@click.option("-f", "--factor", type=STRIDE, required=True, metavar="S", help="The factor s.")
@click.option("-m", "--method", type=enum_choice(Degradation), default=Degradation.AREA.value,
              show_default=True, help="area (block mean), bicubic (Pillow, antialiased) or "
                                      "gaussian (sigma s/2).")
@click.option("--format", "format_name", metavar="FORMAT", help="Output format.")
@max_pixels_option()
@storage_option
@overwrite_option
def degrade_command(input_path: str, output_path: str, factor: int, method: str,
                    format_name: str | None, max_pixels: int, overwrite: bool) -> None:
    """Downscale HIGH by an integer factor into LOW, as `upconv fit --degrade` does.

    \b
    Examples:
      upconv degrade photo.png low.png --factor 2
      upconv degrade - - -f 3 -m gaussian --format png < a.png > a_low.png
    """
    if output_path == "-" and not format_name:
        raise click.UsageError("writing to standard output needs --format (e.g. --format png)")
    prepare_destinations([output_path], [input_path], overwrite)
    for note in degrade_file(input_path, output_path, factor, method, format_name, max_pixels):
        warn(note)




__all__: list[Any] = ["fit_command", "degrade_command"]
