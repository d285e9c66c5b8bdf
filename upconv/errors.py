"""Exceptions that carry a message meant for the user."""

from __future__ import annotations

__all__ = ["UpconvError"]


class UpconvError(ValueError):
    """A problem with the user's input; its message is shown as is (exit status 1)."""
