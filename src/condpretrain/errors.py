"""The one error type users see.

Anything raised as :class:`CondPretrainError` is a problem with the user's input or
environment (a missing folder, a malformed file, a bad option); the CLI prints its
message on one line and exits with status 2, never a traceback. Other exceptions are
bugs and keep their traceback.
"""

from __future__ import annotations


class CondPretrainError(Exception):
    """A user-facing error whose message names the file or option at fault."""


class UnreadableImageError(CondPretrainError):
    """An image file that cannot be decoded (broken, truncated, too large)."""
