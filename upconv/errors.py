"""Exceptions that carry a message meant for the user."""

from __future__ import annotations

__all__ = ["UpconvError", "OutputClosedError"]


class UpconvError(ValueError):
    """A problem with the user's input; its message is shown as is (exit status 1)."""


class OutputClosedError(Exception):
    """The reader of standard output went away (EPIPE), e.g. ``| head -c 100``.

    Not an OSError on purpose: click turns those into exit status 1, while
    upconv exits with 141 (128 + SIGPIPE) like GNU tools.
    """
