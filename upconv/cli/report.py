"""``upconv report``: the checkerboard-artifact report for an image and/or a kernel."""

from __future__ import annotations

import functools
import json
import math
import os

import click

from ..batch import Job, expand_inputs, listed_size, run_jobs
from ..errors import BadInputError
from ..fileio import is_url, outputs_together, shown, write_output
from ..polyphase import default_threads
from ..report import build_report
from ..reporting import ReportSettings, load_report_kernel, report_file, report_job
from .common import (
    CONTEXT,
    EXIT_ABOVE,
    EXIT_FAILURE,
    REPORT_EPILOG,
    STRIDE,
    BatchProgress,
    batch_options,
    describe_failure,
    error,
    max_pixels_option,
    overwrite_option,
    prepare_destinations,
    storage_option,
)


@click.command("report", context_settings=CONTEXT, epilog=REPORT_EPILOG)
@click.argument("image_paths", metavar="[IMAGE...]", nargs=-1)
@click.option("-f", "--factor", type=STRIDE, default=None, metavar="S",
              help="The period s (the upsampling factor); detected (2-8) when left out.")
@click.option("--reference", "reference_path", metavar="HIGH",
              help="A ground-truth image of the same size: adds PSNR and SSIM.")
@click.option("-k", "--kernel", "kernel_spec", metavar="FILE[:KEY]|NAME",
              help="Adds the kernel's polyphase analysis (a kernel file, a checkpoint's "
                   "tensor, a built-in); alone, reports on the kernel only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--fail-above", type=click.FloatRange(0), default=None, metavar="T",
              help="Exit with status 3 when the checkerboard score is above T and the "
                   "pattern is significant (verdict not none); for CI gates. With --kernel "
                   "alone: when the kernel's checkerboard figure is above T percent.")
@click.option("--map", "map_path", metavar="PNG",
              help="Write a heat map of the local score per tile; with --kernel alone, "
                   "a picture of the kernel, its phases and its flat-input response.")
@click.option("--spectrum", "spectrum_path", metavar="PNG",
              help="Write the log power spectrum with the grid frequencies (k/s, l/s) marked.")
@click.option("--html", "html_path", metavar="HTML",
              help="Write a self-contained HTML page: the image with the heat map over it, "
                   "the worst tile magnified, the spectrum, the phase means and the JSON "
                   "(several images: one row each, highest score first).")
@click.option("--tile", type=click.IntRange(4), default=64, show_default=True,
              help="Tile size of --map and --html, in pixels.")
@max_pixels_option()
@batch_options("Several images")
@click.option("--quiet", is_flag=True, help="Several images: no progress bar.")
@storage_option
@overwrite_option
def report_command(image_paths: tuple[str, ...], factor: int | None,
                   reference_path: str | None, kernel_spec: str | None, as_json: bool,
                   fail_above: float | None, map_path: str | None, spectrum_path: str | None,
                   html_path: str | None, tile: int, max_pixels: int, recursive: bool,
                   jobs: int | None, quiet: bool, overwrite: bool) -> None:
    """Measure checkerboard artifacts: the stride-periodic pattern of an upsampled IMAGE.

    The score is the RMS amplitude of the period-s pattern in 8-bit grey
    levels (a +/-1 grey-level checkerboard scores 1), noise subtracted;
    verdict none (< 0.25 or not 3x its noise), faint (< 1.5), visible (< 5)
    or strong. IMAGE may be '-' for standard input.

    \b
    Exit status 3: the score is above --fail-above.

    \b
    Examples:
      upconv report out.png
      upconv report out.png --factor 2 --json | jq .checkerboard.score
      upconv report out.png --reference truth.png --map heat.png --fail-above 1
      upconv report --kernel k.json --map k.png
      upconv report out.png --html report.html
      upconv report outputs/ --html batch.html --json > scores.jsonl
    """
    if not image_paths and kernel_spec is None:
        raise click.UsageError("give an IMAGE, a --kernel, or both")

    several = len(image_paths) > 1 or (image_paths and _is_folder(image_paths[0]))
    if several and (reference_path or map_path or spectrum_path):
        raise click.UsageError("--reference, --map and --spectrum need one IMAGE")
    if not image_paths and (reference_path or spectrum_path):
        raise click.UsageError("--reference and --spectrum need an IMAGE")
    if fail_above is not None and not math.isfinite(fail_above):
        raise click.BadParameter("must be a finite number", param_hint="--fail-above")
    for option, path in (("--map", map_path), ("--spectrum", spectrum_path),
                         ("--html", html_path)):
        if path == "-":  # standard output carries the tables or the JSON
            raise click.BadParameter("needs a file name, not '-'", param_hint=option)
    prepare_destinations([map_path, spectrum_path, html_path], [*image_paths, reference_path],
                       overwrite)
    kernel = None
    if kernel_spec is not None:
        kernel = load_report_kernel(kernel_spec, factor)
        if not image_paths and (map_path or html_path or fail_above is not None):
            kernel = kernel.with_stride(factor)  # a picture or a gate needs the stride
    settings = ReportSettings(factor, kernel, max_pixels)
    if several:
        _report_batch(image_paths, settings, recursive, jobs or default_threads(), as_json,
                      fail_above, quiet, html_path, tile)
        return
    pictures: dict[str, bytes] = {}  # destination -> contents, written together at the end
    if not image_paths:
        report = build_report(None, factor, kernel)
        if map_path:
            from ..pictures import png_bytes, render_kernel

            pictures[map_path] = png_bytes(render_kernel(kernel))
        if html_path:
            from ..html_report import report_page

            pictures[html_path] = report_page(report, None, kernel).encode()
    else:
        report, image = report_file(image_paths[0], settings, reference_path)
        period = report.factor or report.checkerboard.period
        if map_path or spectrum_path:
            from ..pictures import png_bytes, render_map, render_spectrum

            if map_path:
                pictures[map_path] = png_bytes(render_map(image, period, tile))
            if spectrum_path:
                pictures[spectrum_path] = png_bytes(render_spectrum(image, period))
        if html_path:
            from ..html_report import image_figures, report_page

            figures = image_figures(image, period, tile)
            pictures[html_path] = report_page(report, figures, kernel,
                                              title=shown(image_paths[0])).encode()
    with outputs_together():  # the map, the spectrum and the page: all or none
        for path, contents in pictures.items():
            write_output(path, contents, "text" if path == html_path else "image")
    image_path = image_paths[0] if image_paths else None
    if as_json:
        click.echo(report.to_json())
    else:
        from rich.console import Console

        from ..render import print_report

        print_report(report, Console(highlight=False), title=shown(image_path or ""))
    board = report.checkerboard
    if fail_above is not None and board is not None and _above(board, fail_above):
        error(f"checkerboard score {board.score:.3f} is above --fail-above {fail_above:g}")
        raise click.exceptions.Exit(EXIT_ABOVE)
    layer = report.kernel.layer if report.kernel is not None else None
    if fail_above is not None and board is None and layer is not None and (
            layer["checkerboard_percent"] > fail_above):
        error(f"the kernel's checkerboard figure {layer['checkerboard_percent']:.3g} % is above "
              f"--fail-above {fail_above:g}")
        raise click.exceptions.Exit(EXIT_ABOVE)


def _report_batch(paths: tuple[str, ...], settings: ReportSettings, recursive: bool,
                  jobs: int, as_json: bool, fail_above: float | None, quiet: bool,
                  html_path: str | None, tile: int) -> None:
    if "-" in paths:
        raise click.UsageError("several images are read from files, not standard input")
    planned = [Job(path, "", listed_size(path)) for path, _ in expand_inputs(paths, recursive)]
    if not planned:
        raise BadInputError(f"no image files in {', '.join(paths)}")
    failures, above = [], []
    order = {job: index for index, job in enumerate(planned)}  # lines come as jobs finish
    work = functools.partial(report_job, settings)
    entries: dict[int, object] = {}  # input index -> row of the --html page
    if html_path:
        from ..html_report import BatchEntry, batch_page, report_with_figures

        work = functools.partial(report_with_figures, settings, tile)
    console = None
    if not as_json:
        from rich.console import Console

        from ..render import print_report

        console = Console(highlight=False)
    with BatchProgress(len(planned), 0, enabled=not quiet) as progress:
        for outcome in run_jobs(planned, work, jobs):
            progress.advance()
            index = order[outcome.job]
            if outcome.status == "failed":
                failures.append(outcome.job.input)
                progress.print(f"upconv: failed: "
                               f"{describe_failure(outcome.job.input, outcome.error)}")
                if html_path:
                    entries[index] = BatchEntry(shown(outcome.job.input), None, error=outcome.error)
                continue
            report = outcome.result
            if html_path:
                report, figures = report
                entries[index] = BatchEntry(shown(outcome.job.input), report, figures)
            if console is None:
                click.echo(json.dumps({"file": shown(outcome.job.input), "index": index,
                                       **report.to_dict()}))
            else:
                print_report(report, console, title=shown(outcome.job.input))
            board = report.checkerboard
            if fail_above is not None and board and _above(board, fail_above):
                above.append(outcome.job.input)
    if html_path:
        page = batch_page([entries[i] for i in sorted(entries)],
                          title=f"upconv report: {', '.join(map(shown, paths))}")
        write_output(html_path, page.encode(), "text")
    if failures:
        error(f"{len(failures)} file(s) failed: {'; '.join(map(shown, failures[:5]))}")
        raise click.exceptions.Exit(EXIT_FAILURE)
    if above:
        error(f"{len(above)} image(s) scored above --fail-above {fail_above:g}: "
              f"{'; '.join(map(shown, above[:5]))}")
        raise click.exceptions.Exit(EXIT_ABOVE)


def _is_folder(path: str) -> bool:
    """A folder, or a prefix of objects for a URL: a batch of the images in it."""
    if is_url(path):
        from ..storage import is_folder

        return is_folder(path)
    return os.path.isdir(path)


def _above(board, threshold: float) -> bool:
    """The --fail-above gate acts on what the verdict acts on: a significant pattern only.

    A score that is not significant (under 0.25 grey levels, or under 3 times its
    noise) has the verdict "none" and never fails the gate.
    """
    return board.significant and board.score > threshold

