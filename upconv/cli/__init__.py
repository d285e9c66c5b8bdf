"""The ``upconv`` command line: parse, call the library, report, map errors to exit codes.

One click group, ``main``, with a command module each (:mod:`.scale`,
:mod:`.fit`, :mod:`.kernel`, :mod:`.report`); what they share is in
:mod:`.common`. Each command parses its options, calls the library's file
layer (:mod:`upconv.pipeline`, :mod:`upconv.training`, :mod:`upconv.reporting`)
and prints what comes back. :func:`run` maps every outcome to an exit status:

====  ==========================================================
0     success
1     failure: unreadable or invalid input, unwritable output, ...
2     usage error: a bad or missing option or argument
3     ``upconv report``: the checkerboard score is above --fail-above
130   interrupted (Ctrl-C); no partial output is left behind
141   standard output was closed early (e.g. piped into ``head``)
143   terminated (SIGTERM); cleaned up as after Ctrl-C
====  ==========================================================
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import warnings
from typing import Any, TextIO

import click

from .. import __version__
from ..errors import FileAccessError, OutputClosedError, UpconvError
from ..fileio import write_error
from .common import (
    CONTEXT,
    EPILOG,
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    error,
    warn,
)
from .fit import degrade_command, fit_command
from .kernel import kernel_group
from .report import report_command
from .scale import scale_command

__all__ = ["main", "run", "entry_point", "NamedStdout"]


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="upconv")
@click.option("--debug", is_flag=True, help="Show a full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Upsample images by interpolation or transposed convolution.

    Run 'upconv COMMAND --help' for a command's options.
    """
    ctx.obj = {"debug": debug}


for _command in (scale_command, fit_command, degrade_command, kernel_group, report_command):
    main.add_command(_command)


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit status (the console-script entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is a group option, but users type it anywhere: take it from anywhere.
    debug = "--debug" in args
    if debug:
        args = ["--debug"] + [a for a in args if a != "--debug"]
    previous = _on_sigterm_raise()
    stdout = sys.stdout
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if stdout is not None:
                    sys.stdout = NamedStdout(stdout)
                status = main.main(args=args, prog_name="upconv", standalone_mode=False)
                if stdout is not None:
                    sys.stdout.flush()  # a full disk under stdout is reported now, not at exit
            finally:
                sys.stdout = stdout
                _report_warnings(caught)
        if isinstance(status, int):  # click returns the code of a click.exceptions.Exit
            return status
    except Terminated:
        error("terminated")
        return EXIT_TERMINATED
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
        if isinstance(exc, StdoutWriteError) and stdout is sys.__stdout__:
            _silence_stdout()  # what is still buffered cannot be written either
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
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


class NamedStdout:
    """``sys.stdout`` while a command runs: a failed write (a full disk, a file-size
    limit) is the one-line error naming standard output, whatever printed it.

    A reader that went away (EPIPE) still raises BrokenPipeError (exit status
    141). Once such an error is reported, the rest of the output is dropped
    (:func:`run`), so that Python's own flush at exit does not fail again.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @staticmethod
    def _failed(exc: OSError) -> FileAccessError:
        return StdoutWriteError(str(write_error("standard output", exc)))


class StdoutWriteError(FileAccessError):
    """Standard output could not be written (not a reader gone: a full disk, ...)."""


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files are removed on the way)."""


def _on_sigterm_raise():
    """Make SIGTERM raise :class:`Terminated` in the main thread; the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise Terminated

    return signal.signal(signal.SIGTERM, terminate)


def _report_warnings(caught: list) -> None:
    """Library warnings (Pillow's "Corrupt EXIF data", ...) as one upconv line each."""
    seen = set()
    for item in caught:
        message = " ".join(str(item.message).split())
        if message not in seen:
            seen.add(message)
            warn(message)


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


