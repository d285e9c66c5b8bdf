"""Ctrl-C and SIGTERM: stop at once, or, in a batch, after the files in progress.

The command line routes SIGINT and SIGTERM here for the whole of a run
(:func:`handling_signals`, then :meth:`SignalRecord.arm`):

- Outside a batch, the first signal raises :class:`KeyboardInterrupt` (SIGINT)
  or :class:`Terminated` (SIGTERM) in the main thread, which unwinds: temporary
  files are removed, an output is either whole or absent.
- While a batch runs (:func:`batch_stopping`), the first signal only asks it to
  stop: no job starts any more, the jobs in progress finish and are reported,
  and then the batch raises. A second signal stops at once: it raises where
  the batch is running a job or waiting for its workers (never while the
  batch's caller reports an outcome), and the batch ends its workers and
  removes the outputs of the jobs it could not report
  (:func:`upconv.batch.run_jobs`).
- At most one exception is raised for signals in a run. Signals that come
  before the run is armed, after it started reporting its outcome, or after
  that exception, are recorded and only set the exit status, so that a second
  Ctrl-C cannot interrupt the reporting of the first (or of anything else)
  with a traceback.
- Once the run has reported its outcome (:meth:`SignalRecord.finish`), a
  signal that arrives while the process exits ends it at once with the
  signal's status (``exit_on_late_signal``); nothing is left to clean up.

Without :func:`handling_signals` (upconv used as a library), signals keep
their usual effect and :func:`batch_stopping` changes nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Terminated", "BatchStop", "SignalRecord", "handling_signals", "batch_stopping",
           "raise_if_stopped", "interruption", "signals_counted", "signals_received", "tell",
           "STATUS_FOR_SIGNAL"]

#: Exit status for a run stopped by a signal: 128 + its number, as shells report it.
STATUS_FOR_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files are removed on the way)."""


def interruption(signum: int) -> BaseException:
    """The exception that unwinds a run stopped by ``signum``."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@dataclass
class BatchStop:
    """How a running batch hears about signals."""

    #: a signal asked the batch to stop once the jobs in progress are done
    requested: bool = False
    #: a second signal asked it to stop at once
    at_once: bool = False
    #: the main thread runs a job or waits for workers: a second signal raises right there
    interruptible: bool = False


@dataclass
class SignalRecord:
    """The signals of one run, as :func:`handling_signals` saw them."""

    #: the first signal received, which decides the exit status
    first: int | None = None
    #: how many signals have been received (see :func:`signals_received`)
    count: int = 0
    #: a signal raises its exception now (armed, and it has not been raised yet)
    raising: bool = False
    #: the exit status the run reported, once it has (then signals end the process)
    final_status: int | None = None
    exit_on_late_signal: bool = False
    batch: BatchStop | None = None
    previous: dict[int, object] = field(default_factory=dict)

    @property
    def status(self) -> int | None:
        """The exit status the signals call for, or None."""
        return None if self.first is None else STATUS_FOR_SIGNAL[self.first]

    def arm(self) -> None:
        """From now on the first signal raises; raise at once for one that came already."""
        self.raising = True
        self.raise_once()

    def raise_once(self) -> None:
        """Raise the first signal's exception, if armed and not raised yet."""
        if self.first is not None and self.raising:
            self.raising = False
            raise interruption(self.first)

    def record_only(self) -> None:
        """From now on signals are only recorded (the run is reporting its outcome)."""
        self.raising = False

    def finish(self, status: int) -> None:
        """The run has reported ``status``: from now on a signal ends the process at once
        (``exit_on_late_signal``), or the previous handlers are back (in process)."""
        self.final_status = status
        if not self.exit_on_late_signal:
            _restore(self)


#: The record of the run in progress, while :func:`handling_signals` is active.
_record: SignalRecord | None = None


def _say(text: str) -> None:
    """A line on stderr, safe inside a signal handler (no buffered stream is touched)."""
    _write_stderr(f"upconv: {text}\n".encode())


def _write_stderr(data: bytes) -> None:
    try:
        os.write(2, data)
    except OSError:
        pass


def _on_signal(signum: int, frame: object) -> None:
    record = _record
    if record is None:  # pragma: no cover - the handlers go with the record
        raise interruption(signum)
    if signum == signal.SIGINT and os.isatty(2):
        _write_stderr(b"\n")  # end the line of the terminal's "^C"
    record.count += 1
    if record.first is None:
        record.first = signum
    if record.final_status is not None:  # reported and flushed: leave now, nothing to undo
        if record.final_status not in STATUS_FOR_SIGNAL.values():
            _say("error: " + ("terminated" if signum == signal.SIGTERM else "interrupted"))
            os._exit(STATUS_FOR_SIGNAL[signum])
        os._exit(record.final_status)
    batch = record.batch
    if batch is not None and record.raising:
        if not batch.requested:
            batch.requested = True
            _say("stopping after the files in progress (interrupt again to stop at once)")
            return
        batch.at_once = True
        if not batch.interruptible:
            return  # the batch raises as soon as it can
    record.raise_once()


def _restore(record: SignalRecord) -> None:
    """Give SIGINT and SIGTERM their handlers from before the run back."""
    for signum, handler in record.previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
    record.previous.clear()


@contextmanager
def handling_signals(exit_on_late_signal: bool = False) -> Iterator[SignalRecord]:
    """Route SIGINT and SIGTERM to this module for one run (main thread only).

    Signals are only recorded until the run calls :meth:`SignalRecord.arm`.
    Signals that the process ignores (a background job's SIGINT) stay
    ignored. With ``exit_on_late_signal`` (the console script) the handlers
    stay in place after :meth:`SignalRecord.finish`, to end the exiting
    process; otherwise the previous handlers come back when the block ends.
    """
    global _record
    record = SignalRecord(exit_on_late_signal=exit_on_late_signal)
    if threading.current_thread() is not threading.main_thread():
        yield record
        return
    outer, _record = _record, record
    for signum in STATUS_FOR_SIGNAL:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            record.previous[signum] = signal.signal(signum, _on_signal)
    try:
        yield record
    finally:
        if not (exit_on_late_signal and record.final_status is not None):
            _restore(record)
            _record = outer


@contextmanager
def batch_stopping(stop: BatchStop) -> Iterator[BatchStop]:
    """Signals ask this batch to stop, as the module describes, while the block runs.

    Without :func:`handling_signals`, ``stop`` never changes and signals keep
    their usual effect.
    """
    record = _record
    if record is None:
        yield stop
        return
    outer, record.batch = record.batch, stop
    try:
        yield stop
    finally:
        record.batch = outer


def signals_received() -> int:
    """How many SIGINT and SIGTERM signals the run in progress has received (0 without
    :func:`handling_signals`).

    A wait that the first signal's unwinding goes through (Dask tasks still
    running, :func:`upconv.cluster.stop_tasks`) compares the count with the one
    it began with, and ends once another signal comes: after the first, signals
    only set the exit status.

    Examples
    --------
    >>> signals_received()
    0
    """
    return 0 if _record is None else _record.count


def tell(text: str) -> None:
    """Say ``text`` on stderr as ``upconv: TEXT`` while a command runs (under
    :func:`handling_signals`); nothing when upconv is used as a library.

    For what a command does on its way out after a failure or a signal (a wait
    for tasks still running). Written through ``sys.stderr``, so that a live
    progress bar (rich's) puts the line above itself rather than drawing over it.
    """
    if _record is None:
        return
    try:
        sys.stderr.write(f"upconv: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed or gone
        pass


@contextmanager
def signals_counted() -> Iterator[None]:
    """While the block runs, a signal is counted (:func:`signals_received`) and recorded
    (it sets the exit status), but raises nothing.

    For a wait on the way out of a failed or stopped run (Dask tasks still
    running, :func:`upconv.cluster.stop_tasks`): the wait ends at the next
    signal, and the run's own error is what unwinds and is reported, not an
    interruption raised in the middle of undoing its work. A run that had not
    raised for a signal yet raises for the next one after the block, unless one
    came during it.
    """
    record = _record
    if record is None:
        yield
        return
    raising, count = record.raising, record.count
    record.raising = False
    try:
        yield
    finally:
        record.raising = raising and record.count == count


def raise_if_stopped() -> None:
    """Raise the pending signal's exception (once): a batch has reached a point to stop at."""
    if _record is not None:
        _record.raise_once()
