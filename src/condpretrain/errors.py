"""The one error type users see.

Anything raised as :class:`CondPretrainError` is a problem with the user's input or
environment (a missing folder, a malformed file, a bad option); the CLI prints its
message on one line and exits with status 2, never a traceback. Other exceptions are
bugs and keep their traceback.
"""

from __future__ import annotations


class CondPretrainError(Exception):
    """A user-facing error whose message names the file or option at fault."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (self._worker_message(args[0]),)
        super().__init__(*args)

    def _worker_message(self, text: str) -> str:
        """The message alone of an error X raised in a DataLoader worker: the main
        process re-raises it as ``X(text)``, where ``text`` is "Caught X in DataLoader
        worker process N. Original Traceback ..." and ends with the worker's line
        "module.X: message" (a bad VOC image met mid-training would otherwise print the
        worker's traceback)."""
        if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
            return text
        marker = f"\n{type(self).__module__}.{type(self).__qualname__}: "
        at = text.rfind(marker)
        return text[at + len(marker):].strip() if at >= 0 else text


class UnreadableImageError(CondPretrainError):
    """An image file that cannot be decoded (broken, truncated, too large)."""
