"""The ``upconv`` command line: parse, call the library, report, map errors to exit codes.

Exit status (also in ``upconv --help``):

====  ==========================================================
0     success
1     failure: unreadable or invalid input, unwritable output, ...
2     usage error: a bad or missing option or argument
130   interrupted (Ctrl-C); no partial output is left behind
141   standard output was closed early (e.g. piped into ``head``)
====  ==========================================================
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import sys
import threading
import time
import traceback
from dataclasses import replace

import click

from . import __version__
from .batch import Job, Outcome, check_template, expand_inputs, plan_outputs, run_jobs
from .errors import OutputClosedError, UpconvError
from .images import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    atomic_output,
    format_for,
)
from .options import Boundary, Method
from .pipeline import ScaleSettings, resolve_settings_kernel, scale_file, scale_job
from .polyphase import default_threads

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

EPILOG = f"""\b
Exit status:
  {EXIT_OK}    success
  {EXIT_FAILURE}    failure (unreadable input, invalid image, unwritable output, ...)
  {EXIT_USAGE}    usage error (bad or missing option or argument)
  3    report: the checkerboard score is above --fail-above
  {EXIT_INTERRUPTED}  interrupted by Ctrl-C (no partial output is left)
  {EXIT_BROKEN_PIPE}  standard output closed early (e.g. piped into head)
"""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _parse_factor(text: str) -> tuple[float, float]:
    """``"2"`` or ``"1.5"`` or ``"2x3"`` (x then y) -> (factor_y, factor_x)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip() for p in parts):
        raise click.BadParameter(f"{text!r} is not F or FxG (e.g. 2, 1.5 or 2x3)")
    try:
        if "_" in text or not text.isascii():  # float() would take "1_0" and "٣"
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number (use F or FxG, e.g. 2 or 2x3)"
                                 ) from None
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise click.BadParameter(f"{text!r}: a factor must be a positive finite number")
    fx = values[0]
    fy = values[1] if len(values) == 2 else values[0]
    return fy, fx


_SIZE = re.compile(r"^\s*(\d*)\s*(?:x\s*(\d*))?\s*$", re.IGNORECASE | re.ASCII)


def _parse_size(text: str) -> tuple[int | None, int | None]:
    """``"WxH"``, ``"Wx"``, ``"W"`` or ``"xH"`` -> (height, width) with None for "keep aspect"."""
    match = _SIZE.match(text)
    if not match or not (match.group(1) or match.group(2)):
        raise click.BadParameter(f"{text!r} is not WxH (e.g. 1920x1080, 1920x or x1080)")
    width = int(match.group(1)) if match.group(1) else None
    height = int(match.group(2)) if match.group(2) else None
    for side in (width, height):
        if side is not None and side < 1:
            raise click.BadParameter(f"{text!r}: a side of 0 is not an image")
    return height, width


def _enum_choice(enum: type) -> click.Choice:
    return click.Choice([member.value for member in enum], case_sensitive=False)


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="upconv")
@click.option("--debug", is_flag=True, help="Show a full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Upsample images by interpolation or transposed convolution.

    Run 'upconv COMMAND --help' for a command's options.
    """
    ctx.obj = {"debug": debug}


@main.command("scale", context_settings=CONTEXT, epilog=EPILOG)
@click.argument("paths", nargs=-1, required=True, metavar="INPUT OUTPUT | INPUT... -o DIR")
@click.option("-m", "--method", type=_enum_choice(Method), default=Method.BICUBIC.value,
              show_default=True,
              help="scipy.ndimage spline of order 0, 1 or 3 (B-spline), or a transposed "
                   "convolution.")
@click.option("-f", "--factor", "factor_text", metavar="F|FxG",
              help="Scale factor, or FxG for separate x and y factors. For transpose, the "
                   "integer stride (optional when the kernel file states it).")
@click.option("-s", "--size", "size_text", metavar="WxH",
              help="Output size; leave a side out (1920x, x1080) to keep the aspect ratio.")
@click.option("-b", "--boundary", type=_enum_choice(Boundary), default=None,
              help="How the image is extended past its border. [default: edge; zero with "
                   "--padding; a fitted kernel's own]")
@click.option("-k", "--kernel", "kernel_spec", metavar="FILE|NAME",
              help="Transpose kernel: a .json/.npy/.npz/.txt/.csv file, or nearest, bilinear, "
                   "bicubic. [default: the fitted default for factors 2-4, else bilinear]")
@click.option("--padding", type=click.IntRange(0), default=None,
              help="Transpose: PyTorch ConvTranspose2d padding instead of the centred "
                   "alignment (output (H-1)s - 2P + k + Q).")
@click.option("--output-padding", type=click.IntRange(0), default=0,
              help="Transpose: PyTorch output_padding Q (needs --padding).")
@click.option("--post-kernel", metavar="FILE|binomial3",
              help="Transpose: an ordinary stride-1 convolution applied after, against "
                   "checkerboards.")
@click.option("--linear-light", is_flag=True,
              help="Resample in linear light (decode sRGB, resample, encode).")
@click.option("--format", "format_name", metavar="FORMAT",
              help=f"Output format ({', '.join(FORMATS)}); default from OUTPUT's suffix.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=None,
              help="JPEG/WebP quality (default 92).")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS,
              show_default=True,
              help="Refuse inputs or outputs with more pixels than this (streamed .npy "
                   "outputs only when given).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Worker threads (default: all CPUs).")
@click.option("--tile", type=click.IntRange(1), default=None, metavar="N",
              help="Compute in tiles of N output rows (automatic, 1024, above 64 megapixels); "
                   ".npy to .npy is then streamed.")
@click.option("--report", "report_path", metavar="PATH|-",
              help="Write the checkerboard report (JSON) about the output ('-': stdout); "
                   "in a batch, one JSON line per image.")
@click.option("-o", "--output-dir", "output_dir", metavar="DIR",
              help="Batch: write every INPUT (files or folders) into DIR.")
@click.option("--name", "name_template", default="{stem}_x{factor}.{ext}", show_default=True,
              help="Batch: output file name; fields {stem}, {ext}, {factor}, {method}, {name}.")
@click.option("-r", "--recursive", is_flag=True, help="Batch: descend into subfolders.")
@click.option("--skip-existing", is_flag=True,
              help="Batch: skip inputs whose output exists (resume a stopped batch).")
@click.option("--fail-fast", is_flag=True, help="Batch: stop at the first failure.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="Batch: worker processes [default: the number of CPUs].")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Run the batch (or a streamed .npy's tiles) on this dask.distributed "
                   "scheduler (pip install 'upconv[dask]'); files must be on storage the "
                   "workers share.")
@click.option("--quiet", is_flag=True, help="No summary line and no progress bar on stderr.")
def scale_command(paths: tuple[str, ...], method: str, factor_text: str | None,
                  size_text: str | None, boundary: str | None, kernel_spec: str | None,
                  padding: int | None, output_padding: int, post_kernel: str | None,
                  linear_light: bool, format_name: str | None, quality: int | None,
                  max_pixels: int, threads: int | None, tile: int | None,
                  report_path: str | None,
                  output_dir: str | None, name_template: str, recursive: bool,
                  skip_existing: bool, fail_fast: bool, jobs: int | None,
                  dask_address: str | None, quiet: bool) -> None:
    """Upsample INPUT into OUTPUT ('-' for standard input or output), or many files.

    With -o DIR, every INPUT (files, or folders of images) is written into
    DIR under the --name template, by --jobs worker processes (or a Dask
    cluster), with a progress bar; a bad file is reported and the others go
    on (exit status 1 at the end).

    Sampling uses the half-pixel grid of Pillow, OpenCV and PyTorch
    (align_corners=False) and equals scipy.ndimage.zoom(grid_mode=True) per
    channel. Images with alpha are resampled premultiplied. Bit depth is
    kept where the output format allows (16-bit PNG in, 16-bit PNG out).

    --method transpose applies a transposed convolution (PyTorch's
    ConvTranspose2d) in polyphase form: centred on the half-pixel grid with
    the border extended by --boundary, or with --padding exactly as PyTorch
    computes it (use --boundary zero).

    \b
    Examples:
      upconv scale photo.png big.png --factor 2
      upconv scale photos/ -o big/ --factor 2 --recursive --skip-existing
      upconv scale photo.jpg big.webp --size 1920x --method bilinear
      upconv scale photo.png big.png --method transpose --kernel k.json
      cat a.png | upconv scale - - --factor 3 --format png | display
    """
    batch = output_dir is not None
    if batch:
        if "-" in paths:
            raise click.UsageError("a batch (-o DIR) reads files, not standard input")
    elif len(paths) != 2:
        raise click.UsageError("give INPUT and OUTPUT, or several INPUTs with -o DIR")
    else:
        for flag, value in (("--recursive", recursive), ("--skip-existing", skip_existing),
                            ("--fail-fast", fail_fast), ("--jobs", jobs)):
            if value:
                raise click.UsageError(f"{flag} is for batches (-o DIR)")
    chosen = Method(method)
    transpose = chosen is Method.TRANSPOSE
    if report_path == "-" and not batch and paths[1] == "-":
        raise click.UsageError("--report - needs the image to go to a file, not to stdout")
    if not transpose:
        for flag, value in (("--kernel", kernel_spec), ("--padding", padding),
                            ("--post-kernel", post_kernel),
                            ("--output-padding", output_padding or None)):
            if value is not None:
                raise click.UsageError(f"{flag} is for --method transpose only")
        if (factor_text is None) == (size_text is None):
            raise click.UsageError("give exactly one of --factor and --size")
    elif size_text is not None:
        raise click.UsageError("--method transpose scales by its stride; use --factor, "
                               "not --size")
    if output_padding and padding is None:
        raise click.UsageError("--output-padding needs --padding (PyTorch geometry)")
    if format_name:
        try:
            format_for("-", format_name)
        except UpconvError as exc:  # a bad option value is a usage error, like a bad --method
            raise click.BadParameter(str(exc), param_hint="--format") from None
    settings = ScaleSettings(
        method=chosen, factor=_parse_factor(factor_text) if factor_text is not None else None,
        size=_parse_size(size_text) if size_text is not None else None, boundary=boundary,
        kernel_spec=kernel_spec, padding=padding, output_padding=output_padding,
        post_kernel=post_kernel, linear_light=linear_light, format_name=format_name,
        quality=quality, max_pixels=max_pixels, threads=threads, tile=tile,
        max_pixels_given=click.get_current_context().get_parameter_source("max_pixels")
        is not click.core.ParameterSource.DEFAULT,
        full_report=report_path is not None, figure=not quiet)
    kernel = resolve_settings_kernel(settings)  # a bad kernel fails before any image is read
    if batch:
        try:
            check_template(name_template)
        except UpconvError as exc:
            raise click.BadParameter(str(exc), param_hint="--name") from None
        factor_field = factor_text or size_text or str(kernel.stride if kernel else "")
        _scale_batch(paths, output_dir, settings, name_template, factor_field, recursive,
                     skip_existing, fail_fast, jobs, dask_address, report_path, quiet)
        return
    input_path, output_path = paths
    _refuse_clobbering_input(input_path, output_path)
    if dask_address is not None:  # the tiles of a streamed .npy; workers have their own cwd
        settings = replace(settings, dask_address=dask_address)
        input_path, output_path = (os.path.abspath(p) if p != "-" else p
                                   for p in (input_path, output_path))
    with _spinner_after(1.0, f"upconv: {input_path}", enabled=not quiet):
        result = scale_file(input_path, output_path, settings)
    for note in result.notes:
        _warn(note)
    if result.report is not None:
        _write_report(result.report, report_path)
    if not quiet:
        click.echo(f"upconv: {result.summary()}", err=True)


def _scale_batch(paths: tuple[str, ...], output_dir: str, settings: ScaleSettings,
                 template: str, factor_field: str, recursive: bool, skip_existing: bool,
                 fail_fast: bool, jobs: int | None, dask_address: str | None,
                 report_path: str | None, quiet: bool) -> None:
    fmt_suffix = FORMATS[format_for("-", settings.format_name)][1][0].lstrip(".") \
        if settings.format_name else None
    planned = plan_outputs(expand_inputs(paths, recursive), output_dir, template,
                           {"factor": factor_field, "method": settings.method.value},
                           fmt_suffix)
    if not planned:
        raise UpconvError(f"no image files in {', '.join(paths)}")
    if dask_address is not None:  # workers have their own working folders
        planned = [Job(os.path.abspath(job.input), os.path.abspath(job.output))
                   for job in planned]
    try:
        os.makedirs(output_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UpconvError(f"{output_dir}: is a file, not a folder for the outputs") from None
    except OSError as exc:
        raise UpconvError(f"{output_dir}: cannot make the folder ({exc.strerror or exc})"
                          ) from None
    existing = {job.output for job in planned if skip_existing and os.path.exists(job.output)}
    todo = [job for job in planned if job.output not in existing]
    workers = jobs or default_threads()
    if settings.threads is None and workers > 1:  # share the CPUs between the workers
        settings = replace(settings, threads=max(1, default_threads() // workers))
    work = functools.partial(scale_job, settings)
    failures: list[Outcome] = []
    done = 0
    worst: tuple[float, str] | None = None
    # Report lines are written as images finish, so a stopped batch keeps its numbers;
    # resuming (--skip-existing) appends to them.
    report_file = (open(report_path, "a" if skip_existing else "w", encoding="utf-8")
                   if report_path not in (None, "-") else None)
    try:
        with BatchProgress(len(planned), len(existing), enabled=not quiet) as progress:
            for outcome in run_jobs(todo, work, workers, dask_address):
                progress.advance()
                if outcome.status == "failed":
                    failures.append(outcome)
                    progress.print(f"upconv: failed: {describe_failure(outcome)}")
                    if fail_fast:
                        break
                    continue
                done += 1
                result = outcome.result
                for note in result.notes:
                    progress.print(f"upconv: warning: {outcome.job.input}: {note}")
                if result.report is not None:
                    line = json.dumps({"file": outcome.job.input, **result.report})
                    if report_file is None:
                        click.echo(line)
                    else:
                        report_file.write(line + "\n")
                        report_file.flush()
                if result.score is not None and (worst is None or result.score > worst[0]):
                    worst = (result.score, result.figure)
    finally:
        if report_file is not None:
            report_file.close()
    if not quiet:
        text = (f"upconv: scaled {done} of {len(planned)} files into {output_dir} "
                f"({len(failures)} failed, {len(existing)} skipped"
                + (", stopped at the first failure" if fail_fast and failures else "") + ")")
        if worst is not None:
            text += f"; worst {worst[1]}"
        click.echo(text, err=True)
    if failures:
        click.echo(f"upconv: error: {len(failures)} file(s) failed: "
                   + "; ".join(f.job.input for f in failures[:5])
                   + (" ..." if len(failures) > 5 else ""), err=True)
        raise click.exceptions.Exit(EXIT_FAILURE)


def _write_report(report: dict, path: str) -> None:
    text = json.dumps(report, indent=1) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    with atomic_output(path) as handle:
        handle.write(text.encode())


def describe_failure(outcome: Outcome) -> str:
    """The failure's message, starting with the file's name."""
    error = outcome.error or ""
    return error if error.startswith(outcome.job.input) else f"{outcome.job.input}: {error}"


class BatchProgress:
    """A rich progress bar (count, rate, ETA) on stderr, when stderr is a terminal."""

    def __init__(self, total: int, already: int, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.already = total, already
        self.progress = None

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("upconv"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("files", total=self.total,
                                               completed=self.already, rate="")
            self.started = time.monotonic()
            self.count = 0
        return self

    def advance(self) -> None:
        if self.progress is not None:
            self.count += 1
            rate = self.count / max(time.monotonic() - self.started, 1e-9)
            self.progress.update(self.task, advance=1, rate=f"{rate:.1f} files/s")

    def print(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


@contextlib.contextmanager
def _spinner_after(delay: float, label: str, enabled: bool):
    """A spinner with elapsed time on stderr for a single job that takes longer than ``delay``."""
    if not (enabled and sys.stderr.isatty()):
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn(label.replace("[", "\\[")),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    lock = threading.Lock()
    state = {"shown": False, "done": False}

    def show() -> None:
        with lock:
            if not state["done"]:
                progress.start()
                progress.add_task("job", total=None)
                state["shown"] = True

    timer = threading.Timer(delay, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            timer.cancel()
            if state["shown"]:
                progress.stop()


def _warn(message: str) -> None:
    click.echo(f"upconv: warning: {message}", err=True)


def _refuse_clobbering_input(input_path: str, output_path: str) -> None:
    if input_path == "-" or output_path == "-":
        return
    try:
        same = os.path.samefile(input_path, output_path)
    except OSError:
        return
    if same:
        raise UpconvError(f"{output_path}: the output would overwrite the input; "
                          "choose another output name")


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit status (the console-script entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is a group option, but users type it anywhere: take it from anywhere.
    debug = "--debug" in args
    if debug:
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        status = main.main(args=args, prog_name="upconv", standalone_mode=False)
        if isinstance(status, int):  # click returns the code of a click.exceptions.Exit
            return status
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help())  # bare `upconv` or `upconv kernel`: show the help
        return EXIT_OK
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        error(f"{exc.format_message()}{hint}")
        return EXIT_USAGE
    except click.ClickException as exc:
        error(exc.format_message())
        return EXIT_FAILURE
    except (click.Abort, KeyboardInterrupt):
        error("interrupted")
        return EXIT_INTERRUPTED
    except (BrokenPipeError, OutputClosedError):
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except UpconvError as exc:
        if debug:
            traceback.print_exc()
        error(str(exc))
        return EXIT_FAILURE
    except MemoryError:
        if debug:
            traceback.print_exc()
        error("out of memory; try a smaller output or --max-pixels")
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)")
        return EXIT_FAILURE
    return EXIT_OK


def error(message: str) -> None:
    first_line = " ".join(message.split())
    try:
        click.echo(f"upconv: error: {first_line}", err=True)
    except BrokenPipeError:  # pragma: no cover
        pass


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so Python's exit flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover
        pass


def entry_point() -> None:
    """Console script ``upconv``."""
    sys.exit(run())


# The other commands live in their own modules and register on `main`.
from . import cli_fit, cli_kernel, cli_report  # noqa: E402,F401
