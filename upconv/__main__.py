"""``python -m upconv``."""

from .cli import entry_point

entry_point()
