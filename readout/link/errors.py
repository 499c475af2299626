"""What the board link raises: the board refused, did not answer, or a wait was cut short."""

from __future__ import annotations


class BoardError(RuntimeError):
    """The board refused a command (``code`` < 0, ``text`` = its reply) or did not answer well."""

    def __init__(self, message: str, *, code: int | None = None, text: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.text = text


class BoardTimeout(BoardError, TimeoutError):
    """No reply within the timeout."""


class BoardInterrupted(BoardError):
    """A wait for the board was cut short by the owner's stop request (a signal)."""
