"""``upconv scale``: one image, or a batch of them."""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import replace

import click

from ..batch import (
    Outcome,
    check_template,
    expand_inputs,
    plan_outputs,
    run_jobs,
    start_worker_server,
)
from ..errors import BadInputError, FileAccessError, OptionValueError, UpconvError
from ..fileio import is_url, open_text_log, outputs_together, shown, write_output
from ..images import FORMATS, SaveOptions, format_for
from ..methods import Method
from ..options import Boundary
from ..pipeline import ScaleSettings, resolve_settings_kernel, scale_file, scale_job, with_dask
from ..polyphase import default_threads
from ..report import Report
from ..scaling import FITS, stride_from_factor
from .common import (
    CONTEXT,
    EXIT_FAILURE,
    FACTOR,
    FILE_COMMAND_EPILOG,
    SIZE,
    BatchProgress,
    batch_options,
    describe_failure,
    enum_choice,
    existing_file,
    max_pixels_option,
    overwrite_option,
    prepare_destinations,
    refuse_clobbering_input,
    remove_stale_temporaries,
    spinner_after,
    storage_option,
    warn,
)


@click.command("scale", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("paths", nargs=-1, required=True, metavar="INPUT OUTPUT | INPUT... -o DIR")
@click.option("-m", "--method", type=enum_choice(Method), default=Method.BICUBIC.value,
              show_default=True,
              help="scipy.ndimage spline of order 0, 1 or 3 (B-spline), Pillow's Lanczos "
                   "(a = 3), or a transposed convolution.")
@click.option("-f", "--factor", type=FACTOR, metavar="F|FxG",
              help="Scale factor, or FxG for separate x and y factors. For transpose, the "
                   "integer stride (optional when the kernel file states it).")
@click.option("-s", "--size", type=SIZE, metavar="WxH",
              help="Output size; leave a side out (1920x, x1080) to keep the aspect ratio.")
@click.option("--fit", type=click.Choice(FITS, case_sensitive=False), default="inside",
              show_default=True,
              help="With --size WxH: keep the aspect ratio inside the box (as ImageMagick and "
                   "libvips do), cover it, or fill it exactly (stretching).")
@click.option("-b", "--boundary", type=enum_choice(Boundary), default=None,
              help="How the image is extended past its border. [default: edge; zero with "
                   "--padding; a fitted kernel's own]")
@click.option("-k", "--kernel", "kernel_spec", metavar="FILE[:KEY]|NAME",
              help="Transpose kernel: a .json/.npy/.npz/.txt/.csv file, a checkpoint's tensor "
                   "(ckpt.safetensors:up1.weight, .pt, .pth, .npz), or nearest, bilinear, "
                   "bicubic, lanczos3. [default: the fitted default for factors 2-4, else "
                   "bilinear]")
@click.option("--bias", "bias_spec", metavar="FILE[:KEY]",
              help="Transpose: one value per output channel, added as PyTorch adds a "
                   "ConvTranspose2d's bias (a checkpoint's tensor, or .npy/.txt/.csv).")
@click.option("--padding", type=click.IntRange(0), default=None,
              help="Transpose: PyTorch ConvTranspose2d padding instead of the centred "
                   "alignment (output (H-1)s - 2P + k + Q).")
@click.option("--output-padding", type=click.IntRange(0), default=None,
              help="Transpose: PyTorch output_padding Q (needs a padding). [default: the "
                   "kernel file's, else 0]")
@click.option("--layout", default=None, metavar="hwc|chw|AXES",
              help=".npy arrays: H x W x C or C x H x W (PyTorch's; 1 x C x H x W is read "
                   "as C x H x W). Zarr arrays without OME-Zarr axes: a letter per axis of "
                   "tczyx (yx, yxc, cyx, tczyx...); y and x are scaled. [default: hwc, a 4-D "
                   ".npy nchw; the output keeps the input's]")
@click.option("--post-kernel", metavar="FILE|binomial3",
              help="Transpose: an ordinary stride-1 convolution applied after, against "
                   "checkerboards.")
@click.option("--linear-light", is_flag=True,
              help="Resample in linear light (decode sRGB, resample, encode).")
@click.option("--format", "format_name", metavar="FORMAT",
              help=f"Output format ({', '.join(FORMATS)}); default from OUTPUT's suffix.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=None,
              help="JPEG/WebP quality (default 92).")
@click.option("--subsampling", type=click.Choice(["444", "422", "420"]), default=None,
              help="JPEG chroma subsampling; default: a JPEG input's own, else 420.")
@click.option("--progressive", is_flag=True, help="Write a progressive JPEG.")
@click.option("--strip", is_flag=True,
              help="Leave out EXIF, the ICC profile and the physical size (kept by default "
                   "where the format holds them).")
@click.option("--compression", type=click.Choice(["fast", "small"], case_sensitive=False),
              default="fast", show_default=True,
              help="PNG: 'fast' deflates with ISA-L (about a thirtieth of Pillow's time, "
                   "files about 10% bigger than Pillow's); 'small' with zlib level 6 (0.7 x "
                   "Pillow's time, within 2% of its size).")
@max_pixels_option("Refuse inputs or outputs with more pixels than this (streamed .npy "
                   "outputs only when given).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Worker threads (default: all CPUs).")
@click.option("--tile", type=click.IntRange(1), default=None, metavar="N",
              help="Compute in bands of N output rows (automatic above 2 megapixels); "
                   ".npy to .npy is then streamed (automatic above 64 megapixels).")
@click.option("--report", "report_path", metavar="PATH|-",
              help="Write the checkerboard report (JSON) about the output ('-': stdout); "
                   "in a batch, one JSON line per image.")
@click.option("-o", "--output-dir", "output_dir", metavar="DIR",
              help="Batch: write every INPUT (files or folders) into DIR.")
@click.option("--name", "name_template", default=None, metavar="TEMPLATE",
              help="Batch: output file name; fields {stem}, {ext}, {factor}, {size}, {method}, "
                   "{name}, {parent}. [default: {stem}_x{factor}.{ext}, or {stem}_{size}.{ext} "
                   "with --size]")
@batch_options("Batch")
@click.option("--skip-existing", is_flag=True,
              help="Batch: skip inputs whose output exists (resume a stopped batch).")
@click.option("--fail-fast", is_flag=True, help="Batch: stop at the first failure.")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Run the batch (or a streamed .npy's tiles) on this dask.distributed "
                   "scheduler (pip install 'upconv[dask]'); files must be on storage the "
                   "workers share, or objects (s3://...) the workers reach themselves.")
@click.option("--chunks", "zarr_chunks", metavar="Y,X|C1,C2,...",
              help="Zarr output: chunks along y and x, or one per axis. [default: the "
                   "input's chunks scaled]")
@click.option("--pyramid", type=click.IntRange(0), default=0, metavar="N",
              help="Zarr output: add N levels, each a 2x2 mean of the one above, as "
                   "OME-Zarr multiscales.")
@click.option("--quiet", is_flag=True, help="No summary line and no progress bar on stderr.")
@storage_option
@overwrite_option
@click.pass_context
def scale_command(ctx: click.Context, paths: tuple[str, ...], method: str,
                  factor: tuple[float, float] | None, size: tuple[int | None, int | None] | None,
                  fit: str, boundary: str | None, kernel_spec: str | None,
                  bias_spec: str | None, padding: int | None, output_padding: int | None,
                  layout: str | None, post_kernel: str | None, linear_light: bool,
                  format_name: str | None, quality: int | None, subsampling: str | None,
                  progressive: bool, strip: bool, compression: str, max_pixels: int,
                  threads: int | None, tile: int | None, report_path: str | None,
                  output_dir: str | None, name_template: str | None, recursive: bool,
                  jobs: int | None, skip_existing: bool, fail_fast: bool,
                  dask_address: str | None, zarr_chunks: str | None, pyramid: int,
                  quiet: bool, overwrite: bool) -> None:
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
    names_zarr = any(_names_zarr(path) for path in paths)
    zarr_job = names_zarr and not batch
    if batch and names_zarr:
        raise click.UsageError("a Zarr store is scaled on its own: give INPUT.zarr "
                               "OUTPUT.zarr, not -o DIR")
    if not zarr_job:
        for flag, value in (("--chunks", zarr_chunks), ("--pyramid", pyramid)):
            if value:
                raise click.UsageError(f"{flag} is for Zarr outputs (OUTPUT.zarr)")
        layout = _npy_layout(layout)
    chosen = Method(method)
    transpose = chosen is Method.TRANSPOSE
    if not batch and paths[1] == "-" and not format_name:
        raise click.UsageError("writing to standard output needs --format (e.g. --format png)")
    if report_path == "-" and not batch and paths[1] == "-":
        raise click.UsageError("--report - needs the image to go to a file, not to stdout")
    if not transpose:
        for flag, value in (("--kernel", kernel_spec), ("--padding", padding),
                            ("--post-kernel", post_kernel), ("--bias", bias_spec),
                            ("--output-padding", output_padding)):
            if value is not None:
                raise click.UsageError(f"{flag} is for --method transpose only")
        if (factor is None) == (size is None):
            raise click.UsageError("give exactly one of --factor and --size")
    elif size is not None:
        raise click.UsageError("--method transpose scales by its stride; use --factor, "
                               "not --size")
    else:
        try:
            stride_from_factor(factor)
        except UpconvError as exc:
            raise click.BadParameter(str(exc), param_hint="'-f' / '--factor'") from None
    if format_name:
        try:
            format_for("-", format_name)
        except UpconvError as exc:  # a bad option value is a usage error, like a bad --method
            raise click.BadParameter(str(exc), param_hint="--format") from None
    settings = ScaleSettings(
        method=chosen, factor=factor, size=size, fit=fit.lower(), boundary=boundary,
        kernel_spec=kernel_spec, bias_spec=bias_spec, padding=padding,
        output_padding=output_padding, layout=layout.lower() if layout else None,
        post_kernel=post_kernel, linear_light=linear_light, format_name=format_name,
        save=SaveOptions(quality=quality, compression=compression.lower(),
                         subsampling=subsampling, progressive=progressive, strip=strip),
        max_pixels=max_pixels,
        threads=threads, tile=tile,
        max_pixels_given=ctx.get_parameter_source("max_pixels")
        is not click.core.ParameterSource.DEFAULT,
        full_report=report_path is not None, summary_line=not quiet,
        storage_options=_storage_options())
    kernel = resolve_settings_kernel(settings)  # a bad kernel fails before any image is read
    if zarr_job:
        _scale_zarr(paths, settings, kernel, layout, zarr_chunks, pyramid, dask_address,
                    report_path, tile, quiet, overwrite)
        return
    if batch:
        try:
            name_template = name_template or ("{stem}_{size}.{ext}" if size is not None
                                              else "{stem}_x{factor}.{ext}")
            check_template(name_template)
        except UpconvError as exc:
            raise click.BadParameter(str(exc), param_hint="--name") from None
        fields = {"factor": _factor_field(factor, size) or str(kernel.stride if kernel else ""),
                  "size": _size_field(size), "method": settings.method.value}
        _scale_batch(paths, output_dir, settings, name_template, fields, recursive,
                     skip_existing, fail_fast, jobs, dask_address, report_path, quiet,
                     overwrite)
        return
    input_path, output_path = paths
    prepare_destinations([output_path, report_path], [input_path], overwrite,
                         " (to scale several files, give -o DIR)")
    if dask_address is not None:  # the tiles of a streamed .npy; workers have their own cwd
        settings = with_dask(settings, dask_address)
        input_path, output_path = (_absolute(p) if p != "-" else p
                                   for p in (input_path, output_path))
    with outputs_together():  # the image and its --report: both or neither
        with spinner_after(1.0, f"upconv: {shown(input_path)}", enabled=not quiet):
            result = scale_file(input_path, output_path, settings)
        if result.report is not None:
            _write_report(result.report, report_path)
    for note in result.notes:
        warn(note)
    if not quiet:
        click.echo(f"upconv: {result.summary()}", err=True)


def _names_zarr(path: str) -> bool:
    """Whether a path names a Zarr store (:func:`upconv.zarr_arrays.is_zarr`), without
    importing the Zarr module for the image jobs that are nearly every job."""
    if ".zarr" not in path.lower() and not (path != "-" and os.path.isdir(path)):
        return False
    from ..zarr_arrays import is_zarr

    return is_zarr(path)


def _npy_layout(layout: str | None) -> str | None:
    """``--layout`` for an image or ``.npy`` job: hwc or chw (yxc and cyx are the same)."""
    if layout is None:
        return None
    named = {"hwc": "hwc", "chw": "chw", "yxc": "hwc", "cyx": "chw"}.get(layout.lower())
    if named is None:
        raise click.BadParameter(f"{layout!r}: .npy arrays are hwc or chw (axis letters such "
                                 "as tczyx are for Zarr arrays)", param_hint="--layout")
    return named


def _parse_chunks(text: str | None) -> tuple[int, ...] | None:
    """``--chunks 4096,4096`` (or ``4096x4096``) as numbers, each >= 1."""
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: give whole numbers >= 1 separated by commas, "
                                 "e.g. 4096,4096", param_hint="--chunks")
    return values


def _scale_zarr(paths: tuple[str, ...], settings: ScaleSettings, kernel,
                layout: str | None, zarr_chunks: str | None, pyramid: int,
                dask_address: str | None, report_path: str | None, tile: int | None,
                quiet: bool, overwrite: bool) -> None:
    """``upconv scale IN.zarr OUT.zarr``: chunk by chunk on threads or a Dask cluster."""
    from ..zarr_arrays import close_stores

    try:
        _run_zarr(paths, settings, kernel, layout, zarr_chunks, pyramid, dask_address,
                  report_path, tile, quiet, overwrite)
    finally:
        close_stores()


def _run_zarr(paths: tuple[str, ...], settings: ScaleSettings, kernel,
              layout: str | None, zarr_chunks: str | None, pyramid: int,
              dask_address: str | None, report_path: str | None, tile: int | None,
              quiet: bool, overwrite: bool) -> None:
    from ..zarr_arrays import (
        JobRunner,
        layout_letters,
        open_zarr,
        plan_zarr_job,
        run_zarr_job,
        split_zarr_spec,
    )

    input_path, output_path = paths
    if not all(_names_zarr(path) for path in paths):
        raise click.UsageError("Zarr arrays are scaled into Zarr stores: give INPUT.zarr and "
                               "OUTPUT.zarr")
    if layout is not None:
        try:
            layout_letters(layout)
        except ValueError as exc:
            raise click.BadParameter(f"{layout!r}: {exc}", param_hint="--layout") from None
    for flag, value in (("--report", report_path), ("--tile", tile),
                        ("--linear-light", settings.linear_light),
                        ("--format", settings.format_name)):
        if value:
            raise click.UsageError(f"{flag} is for image files, not Zarr arrays")
    chunks = _parse_chunks(zarr_chunks)
    refuse_clobbering_input(split_zarr_spec(input_path)[0], split_zarr_spec(output_path)[0])
    if is_url(output_path):  # (before the cluster is asked for, or the input opened)
        from ..storage import refuse_read_only

        refuse_read_only(split_zarr_spec(output_path)[0])
    # Connected first: the workers import what the tasks run while the input is opened.
    with JobRunner(dask_address, settings.threads) as runner:
        source = open_zarr(input_path, layout)
        if chunks is not None and len(chunks) not in (2, len(source.axes)):
            raise click.BadParameter(f"give y and x chunks, or one per axis of {source.axes}",
                                     param_hint="--chunks")
        remove_stale_temporaries([split_zarr_spec(output_path)[0].rstrip("/")])
        try:
            job = plan_zarr_job(
                source.array.shape, source.array.dtype, source.axes, source.array.chunks,
                method=settings.method, factor=settings.factor, size=settings.size,
                fit=settings.fit, boundary=settings.boundary, kernel=kernel,
                padding=settings.padding, output_padding=settings.output_padding,
                post_kernel=settings.post_kernel, out_chunks=_scaled_chunks(chunks, source.axes))
        except OptionValueError as exc:  # (--chunks that are not whole periods of the grid)
            raise click.BadParameter(exc.reason, param_hint=exc.option) from None
        out_h, out_w = job.plan.shape
        if settings.max_pixels_given and out_h * out_w > settings.max_pixels:
            raise BadInputError(f"{shown(output_path)}: the output is {out_w}x{out_h} pixels, over "
                                f"the limit of {settings.max_pixels} (--max-pixels)")
        # (Local stores are opened by absolute path, so Dask workers find them as they are.)
        with BatchProgress(None, 0, enabled=not quiet, unit="chunks") as bar:
            outcome = run_zarr_job(source, output_path, job, chunks=chunks, pyramid=pyramid,
                                   overwrite=overwrite, progress=bar.set, runner=runner)
    if not quiet:
        click.echo(f"upconv: {outcome.summary()}", err=True)


def _scaled_chunks(chunks: tuple[int, ...] | None, axes: str) -> tuple[int, int] | None:
    """``--chunks`` along y and x: the two given, or those of y and x among one per axis."""
    if chunks is None:
        return None
    if len(chunks) == 2:
        return chunks[0], chunks[1]
    return chunks[axes.index("y")], chunks[axes.index("x")]


def _size_field(size: tuple[int | None, int | None] | None) -> str:
    """``--size`` for the ``{size}`` field: "1920w", "1080h" or "1920x1080" ("" without)."""
    if size is None:
        return ""
    height, width = size
    if height is None:
        return f"{width}w"
    if width is None:
        return f"{height}h"
    return f"{width}x{height}"


def _factor_field(factor: tuple[float, float] | None,
                  size: tuple[int | None, int | None] | None) -> str:
    """``--factor`` or ``--size`` as text for the ``{factor}`` field: "2", "1.5x2", "1920x"."""
    if factor is not None:
        fy, fx = factor
        return f"{fx:g}" if fy == fx else f"{fx:g}x{fy:g}"
    if size is not None:
        height, width = size
        return f"{width or ''}x{height or ''}"
    return ""


def _storage_options() -> dict | None:
    """The ``--storage-option`` values given, for worker processes (None without any)."""
    if "upconv.storage" not in sys.modules:  # no option given, no URL read yet
        return None
    from ..storage import storage_options

    return storage_options() or None


def _absolute(path: str) -> str:
    """A path as Dask workers, in their own working folders, find it (a URL as it is)."""
    return path if is_url(path) else os.path.abspath(path)


def _is_object(url: str) -> bool:
    """Whether a URL names an object itself (not a prefix with objects under it)."""
    from ..storage import is_folder

    return existing_file(url) and not is_folder(url)


def _existing_objects(paths: list[str]) -> set[str]:
    """The URLs among ``paths`` that name objects (or prefixes) that exist, found with one
    listing of each output prefix rather than a request for each object."""
    urls = [path for path in paths if is_url(path)]
    if not urls:
        return set()
    from ..storage import existing

    return existing(urls)


def _scale_batch(paths: tuple[str, ...], output_dir: str, settings: ScaleSettings,
                 template: str, fields: dict[str, str], recursive: bool, skip_existing: bool,
                 fail_fast: bool, jobs: int | None, dask_address: str | None,
                 report_path: str | None, quiet: bool, overwrite: bool) -> None:
    fmt_suffix = FORMATS[format_for("-", settings.format_name)][1][0].lstrip(".") \
        if settings.format_name else None
    locations = [*paths, output_dir]
    if dask_address is None and (jobs or default_threads()) > 1 \
            and any(is_url(path) for path in locations):
        start_worker_server(locations)  # importing while the prefixes are listed
    planned = plan_outputs(expand_inputs(paths, recursive), output_dir, template,
                           fields, fmt_suffix)
    if not planned:
        raise BadInputError(f"no image files in {', '.join(paths)}")
    if dask_address is not None:  # workers have their own working folders
        planned = [replace(job, input=_absolute(job.input), output=_absolute(job.output))
                   for job in planned]
    # Every check before the output folder is made: a refused batch leaves nothing.
    # Objects that exist, in one listing per prefix (needed only to skip or refuse them).
    objects = (_existing_objects([job.output for job in planned])
               if skip_existing or not overwrite else set())
    existing = {job.output for job in planned if skip_existing and (
        job.output in objects if is_url(job.output) else os.path.exists(job.output))}
    todo = [job for job in planned if job.output not in existing]
    replaced = [] if overwrite else [
        job.output for job in todo
        if (job.output in objects if is_url(job.output) else existing_file(job.output))]
    if replaced and not overwrite:
        raise FileAccessError(f"{replaced[0]}: exists ({len(replaced)} of the outputs do); "
                              "give --skip-existing to keep them or -y/--overwrite to "
                              "replace them")
    # The report file is checked against every input; resuming appends to it.
    prepare_destinations([report_path], [job.input for job in planned],
                         overwrite or skip_existing)
    if is_url(output_dir) and _is_object(output_dir.rstrip("/")):
        raise FileAccessError(f"{output_dir}: is an object, not a prefix (folder) for the "
                              "outputs")
    try:
        if not is_url(output_dir):  # objects need no folders
            os.makedirs(output_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FileAccessError(f"{output_dir}: is a file, not a folder for the outputs"
                              ) from None
    except OSError as exc:
        raise FileAccessError(f"{output_dir}: cannot make the folder ({exc.strerror or exc})"
                              ) from None
    remove_stale_temporaries(job.output for job in planned)
    workers = jobs or default_threads()
    if settings.threads is None and workers > 1:  # share the CPUs between the workers
        settings = replace(settings, threads=max(1, default_threads() // workers))
    work = functools.partial(scale_job, settings)
    order = {job: index for index, job in enumerate(planned)}  # lines come as jobs finish
    failures: list[Outcome] = []
    done = 0
    worst: tuple[float, str] | None = None
    # Report lines are written as images finish, so a stopped batch keeps its numbers;
    # resuming (--skip-existing) appends to them.
    report_file = (open_text_log(report_path, append=skip_existing)
                   if report_path not in (None, "-") else None)
    try:
        with BatchProgress(len(planned), len(existing), enabled=not quiet) as progress:
            for outcome in run_jobs(todo, work, workers, dask_address):
                progress.advance()
                if outcome.status == "failed":
                    failures.append(outcome)
                    progress.print("upconv: failed: "
                               + describe_failure(outcome.job.input, outcome.error))
                    if fail_fast:
                        break
                    continue
                done += 1
                result = outcome.result
                for note in result.notes:
                    progress.print(f"upconv: warning: {shown(outcome.job.input)}: {note}")
                if result.report is not None:
                    line = json.dumps({"file": shown(outcome.job.input),
                                       "index": order[outcome.job],
                                       **result.report.to_dict()})
                    if report_file is None:
                        click.echo(line)
                    else:
                        report_file.write_line(line)
                if result.score is not None and (worst is None or result.score > worst[0]):
                    worst = (result.score, result.checkerboard)
    finally:
        if report_file is not None:
            report_file.close()
        if workers > 1 or dask_address is not None:  # a worker killed mid-file left its own
            remove_stale_temporaries(job.output for job in planned)
    if not quiet:
        text = (f"upconv: scaled {done} of {len(planned)} files into {output_dir} "
                f"({len(failures)} failed, {len(existing)} skipped"
                + (", stopped at the first failure" if fail_fast and failures else "") + ")")
        if worst is not None:
            text += f"; worst {worst[1]}"
        click.echo(text, err=True)
    if failures:
        click.echo(f"upconv: error: {len(failures)} file(s) failed: "
                   + "; ".join(shown(f.job.input) for f in failures[:5])
                   + (" ..." if len(failures) > 5 else ""), err=True)
        raise click.exceptions.Exit(EXIT_FAILURE)


def _write_report(report: Report, path: str) -> None:
    text = report.to_json() + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    write_output(path, text.encode(), "text")
