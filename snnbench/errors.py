"""The one exception type the CLI turns into a single stderr line and exit code 2."""

from __future__ import annotations


class SnnbenchError(Exception):
    """Bad input or a refused operation: the message says what is wrong and how to fix it."""
