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

Signals are handled by :mod:`upconv.stopping` for the whole run, so that a
Ctrl-C arriving at any moment (even while another outcome is being reported,
or as the process exits) gives status 130 and one line, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import select
import sys
import traceback
import warnings
from typing import Any, TextIO

import click

from .. import __version__
from ..errors import FileAccessError, OptionValueError, OutputClosedError, UpconvError
from ..fileio import write_error
from ..stopping import SignalRecord, Terminated, handling_signals
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

__all__ = ["main", "run", "entry_point", "NamedStdout"]


#: name -> (module, attribute, short help): each command's module is imported only when the
#: command runs, so ``upconv --version`` and ``--help`` load neither numpy nor Pillow. The
#: short help is the command's own first line (a test keeps them equal).
COMMANDS = {
    "scale": ("scale", "scale_command",
              "Upsample INPUT into OUTPUT ('-' for standard input or output), or many files."),
    "fit": ("fit", "fit_command",
            "Fit a transposed-convolution kernel by least squares on LOW/HIGH pairs."),
    "degrade": ("fit", "degrade_command",
                "Downscale HIGH by an integer factor into LOW, as `upconv fit --degrade` does."),
    "kernel": ("kernel", "kernel_group",
               "Kernels and PyTorch layers: show, matrix, audit, fix and init."),
    "report": ("report", "report_command",
               "Measure checkerboard artifacts: the stride-periodic pattern of an upsampled "
               "IMAGE."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they are used (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help) for name, (_, _, help) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="upconv")
@click.option("--debug", is_flag=True, help="Show a full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Upsample images by interpolation or transposed convolution.

    Run 'upconv COMMAND --help' for a command's options.
    """
    ctx.obj = {"debug": debug}


def run(argv: list[str] | None = None, exiting: bool = False) -> int:
    """Run the command line and return its exit status.

    Ctrl-C and SIGTERM are handled as :mod:`upconv.stopping` describes for the
    whole run: whenever they arrive, the status is 130 or 143 with one
    "interrupted" or "terminated" line, never a traceback. ``exiting`` (the
    console script, which exits right after): a signal that arrives after the
    outcome was reported ends the process at once with that status, and
    (without ``--debug``) warnings and exceptions that library code reports on
    its own are one line each; otherwise the previous signal handlers are
    restored and Python's hooks are left alone.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is a group option, but users type it anywhere: take it from anywhere.
    debug = "--debug" in args
    if debug:
        args = ["--debug"] + [a for a in args if a != "--debug"]
    elif exiting:
        _one_line_reports()
    with handling_signals(exit_on_late_signal=exiting) as signals:
        try:
            signals.arm()
            status = _run_command(args, debug)
            signals.record_only()
        except (KeyboardInterrupt, Terminated) as exc:  # arrived while reporting an outcome
            signals.record_only()
            status = _interrupted(exc)
        status = _with_recorded_signal(status, signals)
        _flush_standard_streams()
        status = _with_recorded_signal(status, signals)  # one that came in the flush
        signals.finish(status)
        return status


def _run_command(args: list[str], debug: bool) -> int:
    """Run one command line; map every outcome to an exit status and a message."""
    stdout = sys.stdout
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _ignore_library_hints()
            try:
                if stdout is not None:
                    sys.stdout = NamedStdout(stdout)
                # Not main.main(): click would turn a broken pipe anywhere in a command into
                # a silent exit 1 (only stdout's may be silent), and Ctrl-C into Abort.
                with main.make_context("upconv", args) as context:
                    status = main.invoke(context)
                if stdout is not None:
                    sys.stdout.flush()  # a full disk under stdout is reported now, not at exit
            finally:
                sys.stdout = stdout
                _report_warnings(caught)
        if isinstance(status, int):  # click returns the code of a click.exceptions.Exit
            return status
    except (click.Abort, KeyboardInterrupt, Terminated) as exc:
        return _interrupted(exc)
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
    except (BrokenPipeError, OutputClosedError) as exc:
        # Only standard output closed early is silent (141); any other pipe is a failure.
        if isinstance(exc, BrokenPipeError) and not _stdout_reader_gone():
            return _unexpected(exc, debug)
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OptionValueError as exc:  # (commands turn theirs into click's own usage errors)
        error(str(exc))
        return EXIT_USAGE
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
        return _unexpected(exc, debug)
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


def _interrupted(exc: BaseException) -> int:
    """Report a run stopped by Ctrl-C or SIGTERM; its status."""
    terminated = isinstance(exc, Terminated)
    error("terminated" if terminated else "interrupted")
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _with_recorded_signal(status: int, signals: SignalRecord) -> int:
    """The status once a signal that was only recorded (it came while an outcome was being
    reported, or after) is accounted for: the run was interrupted all the same."""
    if signals.status is None or status == signals.status:
        return status
    error("terminated" if signals.status == EXIT_TERMINATED else "interrupted")
    return signals.status


def _unexpected(exc: Exception, debug: bool) -> int:
    """Report an exception that upconv did not expect (a bug, or a broken environment)."""
    if debug:
        traceback.print_exc()
    error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)")
    return EXIT_FAILURE


def _report_warnings(caught: list) -> None:
    """Library warnings (Pillow's "Corrupt EXIF data", ...) as one upconv line each."""
    seen = set()
    for item in caught:
        message = " ".join(str(item.message).split())
        if message not in seen:
            seen.add(message)
            warn(message)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe (or socket) whose reader went away."""
    try:
        descriptor = sys.stdout.fileno()
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP)
                   for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no stdout
        return False


def _flush_standard_streams() -> None:
    """Flush what is still buffered for stdout and stderr, so that nothing is left to fail
    (or to be interrupted) while Python exits."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout:
                _silence_stdout()
        except (AttributeError, OSError, ValueError):
            pass


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so Python's exit flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover
        pass


def entry_point() -> None:
    """Console script ``upconv`` (and ``python -m upconv``)."""
    try:
        status = run(exiting=True)
    finally:
        engine = sys.modules.get("upconv.polyphase")  # imported only if a job computed
        if engine is not None:
            engine.shutdown_pools()  # no worker thread may hold the exit up
    exit_without_teardown(status)


def exit_without_teardown(status: int) -> None:
    """End the process with ``status`` once Python's exit handlers have run and the
    standard streams are flushed, without the interpreter's teardown of every module and
    object that follows them (mypy ends so too): a noticeable part of a second of every
    ``--dask`` or Zarr command, once zarr and distributed are imported (compare ``python
    -c "import distributed, zarr"`` with the same ending in ``os._exit(0)``). Every
    output is complete and closed before this; only objects' memory goes unfreed, which
    the system takes back. Where another thread is still running (one that is not
    a daemon, which Python waits for), or the interpreter has no such call, it is
    ``sys.exit(status)``."""
    import atexit
    import threading

    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None or any(
            thread is not threading.main_thread() and thread.is_alive() and not thread.daemon
            for thread in threading.enumerate()):
        sys.exit(status)
    run_handlers()
    _flush_standard_streams()
    os._exit(status)


def _one_line_reports() -> None:
    """For the rest of the process, what library code reports outside a command's own
    handling (a warning, an exception in a finalizer, as multiprocessing's when its helper
    process could not start; also while Python exits) comes as one upconv line each."""
    seen: set[str] = set()

    def once(message: str) -> None:
        message = " ".join(message.split())
        if message not in seen:
            seen.add(message)
            try:
                warn(message)
            except (OSError, ValueError, AttributeError):  # stderr closed or gone
                pass

    def unraisable(report) -> None:  # sys.UnraisableHookArgs
        once(f"ignored {type(report.exc_value).__name__}: {report.exc_value}")

    def warning(message, category, filename, lineno, file=None, line=None) -> None:
        once(str(message))

    sys.unraisablehook = unraisable
    warnings.showwarning = warning
    _ignore_library_hints()


def _ignore_library_hints() -> None:
    """Leave out warnings that are hints to the libraries upconv uses, nothing a user can
    act on: aiohttp's, to gcsfs and adlfs as they send an object whole from bytes, that a
    file object would not hold up their event loop."""
    warnings.filterwarnings("ignore", message="Sending a large body directly with raw bytes")


