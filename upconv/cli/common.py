"""What every ``upconv`` command shares: options, parameter types, messages, progress.

Commands import from here and from the library, never from each other.
Exit statuses are decided in :func:`upconv.cli.run`; this module only names them.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Any, TypeVar

import click

from .. import fileio
from ..errors import BadInputError, FileAccessError
from ..fileio import shown
from ..limits import DEFAULT_MAX_PIXELS

__all__ = ["CONTEXT", "EPILOG", "FILE_COMMAND_EPILOG", "REPORT_EPILOG", "epilog",
           "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_ABOVE", "storage_option",
           "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE", "EXIT_TERMINATED", "FACTOR", "SIZE",
           "STRIDE", "HW",
           "enum_choice", "max_pixels_option", "batch_options", "overwrite_option",
           "existing_file", "refuse_existing", "prepare_destinations", "shown",
           "remove_stale_temporaries", "error", "warn",
           "refuse_clobbering_input", "BatchProgress", "spinner_after", "describe_failure"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: ``upconv report``: the checkerboard score is above ``--fail-above``.
EXIT_ABOVE = 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 130, 141, 143

#: What each exit status means, for the help texts.
EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_FAILURE: "failure (unreadable input, invalid image, unwritable or existing output)",
    EXIT_USAGE: "usage error (bad or missing option or argument)",
    EXIT_ABOVE: "the checkerboard score is above --fail-above",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (no partial output is left)",
    EXIT_BROKEN_PIPE: "standard output closed early (e.g. piped into head)",
    EXIT_TERMINATED: "terminated by SIGTERM (cleaned up as after Ctrl-C)",
}


def epilog(*statuses: int, commands: dict[int, str] | None = None) -> str:
    """The "Exit status" table of a help text, for the statuses the command can return.

    ``commands`` names the command a status belongs to, in the whole table.

    Examples
    --------
    >>> print(epilog(0, 3).replace("\b", ""))
    <BLANKLINE>
    Exit status:
      0    success
      3    the checkerboard score is above --fail-above
    <BLANKLINE>
    """
    commands = commands or {}
    rows = "".join(f"  {status:<5}{commands.get(status, '')}{EXIT_MEANINGS[status]}\n"
                   for status in statuses)
    return f"\b\nExit status:\n{rows}"


#: The whole table, once, under ``upconv --help`` (status 3 is ``upconv report``'s).
EPILOG = epilog(EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_ABOVE, EXIT_INTERRUPTED,
                EXIT_BROKEN_PIPE, EXIT_TERMINATED,
                commands={EXIT_ABOVE: "report, kernel audit: "})
#: The statuses of a command that reads and writes files (and may write to stdout).
FILE_COMMAND_EPILOG = epilog(EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED,
                             EXIT_BROKEN_PIPE, EXIT_TERMINATED)
#: ``upconv report``'s: the file command's, plus the --fail-above gate.
REPORT_EPILOG = epilog(EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_ABOVE, EXIT_INTERRUPTED,
                       EXIT_BROKEN_PIPE, EXIT_TERMINATED)

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------ parameter types

class FactorType(click.ParamType):
    """``F`` or ``FxG`` (x then y): a positive finite factor, or one per axis -> (fy, fx).

    Examples
    --------
    >>> FACTOR.convert("1.5x2", None, None)
    (2.0, 1.5)
    """

    name = "factor"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        parts = text.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip() for p in parts):
            self.fail(f"{text!r} is not F or FxG (e.g. 2, 1.5 or 2x3)", param, ctx)
        try:
            if "_" in text or not text.isascii():  # float() would take "1_0" and "٣"
                raise ValueError
            values = [float(p) for p in parts]
        except ValueError:
            self.fail(f"{text!r} is not a number (use F or FxG, e.g. 2 or 2x3)", param, ctx)
        for number in values:
            if not math.isfinite(number) or number <= 0:
                self.fail(f"{text!r}: a factor must be a positive finite number", param, ctx)
        fx = values[0]
        fy = values[1] if len(values) == 2 else values[0]
        return fy, fx


class StrideType(FactorType):
    """A factor that is one whole number >= 2 on both axes (``2`` or ``2x2``) -> int.

    Examples
    --------
    >>> STRIDE.convert("2x2", None, None)
    2
    """

    name = "stride"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            from ..scaling import stride_from_factor

            stride = stride_from_factor(super().convert(value, param, ctx), "the stride")
        except BadInputError as exc:
            self.fail(str(exc), param, ctx)
        assert stride is not None
        return stride


_SIZE = re.compile(r"^\s*(\d*)\s*(?:x\s*(\d*))?\s*$", re.IGNORECASE | re.ASCII)
_HW = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$", re.IGNORECASE | re.ASCII)


class SizeType(click.ParamType):
    """``WxH``, ``Wx``, ``W`` or ``xH`` -> (height, width) with None for "keep aspect".

    Examples
    --------
    >>> SIZE.convert("1920x", None, None)
    (None, 1920)
    """

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int | None, int | None]:
        if isinstance(value, tuple):
            return value
        match = _SIZE.match(str(value))
        if not match or not (match.group(1) or match.group(2)):
            self.fail(f"{value!r} is not WxH (e.g. 1920x1080, 1920x or x1080)", param, ctx)
        width = int(match.group(1)) if match.group(1) else None
        height = int(match.group(2)) if match.group(2) else None
        for side in (width, height):
            if side is not None and side < 1:
                self.fail(f"{value!r}: a side of 0 is not an image", param, ctx)
        return height, width


class HeightWidthType(click.ParamType):
    """``HxW`` with both sides given -> (height, width)."""

    name = "HxW"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        match = _HW.match(str(value))
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            self.fail(f"{value!r} is not HxW (e.g. 4x4)", param, ctx)
        return int(match.group(1)), int(match.group(2))


FACTOR = FactorType()
STRIDE = StrideType()
SIZE = SizeType()
HW = HeightWidthType()


def enum_choice(enum: type[Enum]) -> click.Choice:
    """A case-insensitive choice of the enum's values, so the CLI cannot drift from the library."""
    return click.Choice([member.value for member in enum], case_sensitive=False)


# ------------------------------------------------------------------ shared options

def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def max_pixels_option(help_text: str = "Refuse larger images.") -> Callable[[F], F]:
    """``--max-pixels N``, the decompression-bomb and memory guard."""
    return click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS,
                        show_default=True, help=help_text)


def batch_options(what: str) -> Callable[[F], F]:
    """``-r/--recursive``, ``-j/--jobs`` and ``--quiet`` for commands that take many files."""
    return _options(
        click.option("-r", "--recursive", is_flag=True,
                     help=f"{what}: descend into subfolders."),
        click.option("-j", "--jobs", type=click.IntRange(1), default=None,
                     help=f"{what}: worker processes [default: the number of CPUs]."),
    )


# ------------------------------------------------------------------ messages

def error(message: str) -> None:
    """``upconv: error: ...`` on stderr, on one line."""
    first_line = " ".join(message.split())
    try:
        click.echo(f"upconv: error: {first_line}", err=True)
    except BrokenPipeError:  # pragma: no cover
        pass


def warn(message: str) -> None:
    """``upconv: warning: ...`` on stderr."""
    click.echo(f"upconv: warning: {message}", err=True)


def storage_option(function: F) -> F:
    """``--storage-option KEY=VALUE`` (repeatable): options for object stores' file systems
    (fsspec's, e.g. ``endpoint_url=http://127.0.0.1:9000`` or ``anon=true``), on top of
    the environment's (the AWS credential chain, ``AWS_ENDPOINT_URL``,
    ``FSSPEC_<PROTOCOL>_<OPTION>``); ``s3.KEY=VALUE`` applies to one protocol."""

    def apply(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        # Every command sets its own: none given is none kept from an earlier command in
        # this process (``upconv.cli.run`` called twice). (Not imported for nothing: without
        # the module imported, no options were set.)
        if value or "upconv.storage" in sys.modules:
            from ..storage import set_storage_options

            try:
                set_storage_options(value)
            except BadInputError as exc:
                raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return click.option("--storage-option", "storage_options", multiple=True,
                        metavar="KEY=VALUE", expose_value=False, callback=apply,
                        help="An option for object stores (s3://, gs://, az://), passed to "
                             "fsspec: endpoint_url=..., anon=true, s3.profile=...; "
                             "repeatable. Credentials come from the usual environment "
                             "(pip install 'upconv[cloud]').")(function)


def overwrite_option(function: F) -> F:
    """``-y/--overwrite``: without it, no command replaces a file that exists."""
    return click.option("-y", "--overwrite", is_flag=True,
                        help="Replace output files that exist (without it upconv refuses to "
                             "replace any file).")(function)


def existing_file(path: str | None) -> bool:
    """Whether ``path`` names a regular file (or an object, for a URL) that exists
    (standard output, devices and pipes are not files a write would replace)."""
    if path in (None, "-"):
        return False
    if fileio.is_url(path):
        from ..storage import exists

        return exists(path)
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def refuse_existing(paths: Iterable[str | None], overwrite: bool, hint: str = "") -> None:
    """Refuse, before any work, to replace a file that exists unless ``--overwrite`` was given.

    ``hint`` is added to the message (another way out, e.g. ``-o DIR``).
    """
    if overwrite:
        return
    for path in paths:
        if existing_file(path):
            raise FileAccessError(f"{path}: exists; upconv replaces a file only with "
                                  f"-y/--overwrite{hint}")


def prepare_destinations(outputs: Iterable[str | None], inputs: Iterable[str | None],
                         overwrite: bool, hint: str = "") -> None:
    """Check every file a run will write before any work, so that a refused run writes nothing;
    then clear what interrupted runs left for them (:func:`remove_stale_temporaries`).

    Each output (``None`` and ``"-"`` left out) must not be one of the inputs, nor
    another output, must go into a folder that exists, and must not replace a
    file that exists unless ``overwrite`` (see :func:`refuse_existing`).
    """
    targets = [path for path in outputs if path not in (None, "-")]
    sources = [path for path in inputs if path not in (None, "-")]
    seen: dict[str, str] = {}
    for path in targets:
        for source in sources:
            refuse_clobbering_input(source, path)
        url = fileio.is_url(path)
        real = path if url else os.path.realpath(path)
        if real in seen:
            raise BadInputError(f"{seen[real]} and {path} are the same file; give each "
                                "output its own name")
        seen[real] = path
        if url:  # a bucket that does not exist is said when the object is written
            continue
        folder = os.path.dirname(real) or "."
        if not os.path.isdir(folder):
            shown = os.path.dirname(path) or "."
            if os.path.exists(folder):
                raise FileAccessError(f"{path}: cannot write there ({shown!r} is not a folder)")
            raise FileAccessError(f"{path}: folder {shown!r} does not exist")
    refuse_existing(targets[:1], overwrite, hint)
    refuse_existing(targets[1:], overwrite)
    remove_stale_temporaries(targets)


def remove_stale_temporaries(outputs: Iterable[str]) -> None:
    """Remove the temporary files that killed runs (``kill -9``, a crash, a power cut) left
    beside these outputs, with one warning line.

    Only upconv's own temporary files for these very outputs
    (``.NAME.PID.XXXXXXXX.part``) whose writer is no longer running go; see
    :func:`upconv.fileio.remove_stale_temporaries`.
    """
    removed = fileio.remove_stale_temporaries(outputs)
    if removed:
        shown = ", ".join(removed[:3]) + (" ..." if len(removed) > 3 else "")
        warn(f"removed {len(removed)} temporary file(s) left by an interrupted run: {shown}")


def refuse_clobbering_input(input_path: str, output_path: str) -> None:
    """Refuse an output that is the input itself (same file, whatever the path says)."""
    if input_path == "-" or output_path == "-":
        return
    if fileio.is_url(input_path) or fileio.is_url(output_path):
        if fileio.is_url(input_path) and fileio.is_url(output_path):
            from ..storage import same_object

            if same_object(input_path, output_path):  # s3a://b/k is s3://b/k
                raise BadInputError(f"{shown(output_path)}: the output would overwrite the "
                                    "input; choose another output name")
        return
    try:
        same = os.path.samefile(input_path, output_path)
    except OSError:
        return
    if same:
        raise BadInputError(f"{output_path}: the output would overwrite the input; "
                            "choose another output name")


def describe_failure(input_path: str, error_text: str | None) -> str:
    """A batch failure's message, starting with the file's name (without secrets)."""
    text = error_text or ""
    text = text if text.startswith(input_path) else f"{input_path}: {text}"
    return shown(text) if fileio.is_url(input_path) else text


# ------------------------------------------------------------------ progress

class BatchProgress:
    """A rich progress bar (count, rate, ETA) on stderr, when stderr is a terminal."""

    def __init__(self, total: int | None, already: int, enabled: bool,
                 unit: str = "files") -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.already, self.unit = total, already, unit
        self.progress: Any = None

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
            self.task = self.progress.add_task(self.unit, total=self.total,
                                               completed=self.already, rate="")
            self.started = time.monotonic()
            self.count = 0
        return self

    def advance(self) -> None:
        if self.progress is not None:
            self.count += 1
            rate = self.count / max(time.monotonic() - self.started, 1e-9)
            self.progress.update(self.task, advance=1, rate=f"{rate:.1f} {self.unit}/s")

    def set(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` (a job whose size is known once it is planned)."""
        if self.progress is not None:
            rate = done / max(time.monotonic() - self.started, 1e-9)
            self.progress.update(self.task, completed=done, total=total,
                                 rate=f"{rate:.1f} {self.unit}/s")

    def print(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


@contextlib.contextmanager
def spinner_after(delay: float, label: str, enabled: bool) -> Iterator[None]:
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
