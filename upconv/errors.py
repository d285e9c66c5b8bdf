"""Exceptions that carry a message meant for the user.

Everything upconv refuses is an :class:`UpconvError` whose message is one line
naming the file or option and the problem; the command line prints it and
exits with status 1. Two kinds:

- :class:`BadInputError` (also a :class:`ValueError`): a value, image, kernel
  or option upconv cannot work with (:class:`OptionValueError`, an option's value that
  only the job shows to be bad, is a usage error: status 2);
- :class:`FileAccessError` (also an :class:`OSError`): a file or folder that
  cannot be read or written (missing, a directory, permission denied, ...).

A batch whose worker processes fail raises :class:`WorkerError`, also an
:class:`UpconvError`.
"""

from __future__ import annotations

__all__ = ["UpconvError", "BadInputError", "OptionValueError", "FileAccessError",
           "WorkerError", "OutputClosedError"]


class UpconvError(Exception):
    """A problem the user can fix; its message is shown as is (exit status 1)."""


class BadInputError(UpconvError, ValueError):
    """A value, image, kernel or option that upconv cannot work with."""


class OptionValueError(BadInputError):
    """An option's value that the job it is given to cannot use, such as ``--chunks`` that
    are not whole periods of the job's grid: the command line reports it as a usage error
    (status 2).

    Examples
    --------
    >>> error = OptionValueError("--chunks", "7 is not a whole number of periods")
    >>> str(error), error.option
    ('--chunks: 7 is not a whole number of periods', '--chunks')
    """

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option, self.reason = option, reason


class FileAccessError(UpconvError, OSError):
    """A file or folder that cannot be read or written."""

    def __str__(self) -> str:  # OSError would show "[Errno ...]" forms; ours is one message
        return str(self.args[0]) if self.args else ""


class WorkerError(UpconvError):
    """A batch's worker processes could not be started, or one of them stopped unexpectedly."""


class OutputClosedError(Exception):
    """The reader of standard output went away (EPIPE), e.g. ``| head -c 100``.

    Not an OSError on purpose: click turns those into exit status 1, while
    upconv exits with 141 (128 + SIGPIPE) like GNU tools.
    """
