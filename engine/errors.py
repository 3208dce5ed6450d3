"""Errors a user can fix, and how an entry point shows any error it expected: one line, no traceback.

The engine raises a `TrainingError` subclass where the message alone says what went wrong and what
to do (a changed config on resume, a non-finite loss, a missing file). The entry points catch
these and the data errors they name, log the message and exit non-zero; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A problem with the run's inputs or state; the message says how to fix it."""


class SetupError(TrainingError):
    """A flag or a path is wrong (found before any training)."""


class ResumeMismatchError(TrainingError):
    """The checkpoint to resume from was written by a run with other settings."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; nothing was saved after the last finite step."""


# torch's DataLoader re-raises a worker's exception as the same type, with a message that starts
# with this and holds the worker's whole traceback (torch/_utils.py, ExceptionWrapper.reraise).
_WORKER_MESSAGE_START = "Caught "
_WORKER_TRACEBACK_MARK = "Original Traceback"


def user_message(error: BaseException) -> str:
    """The error's own message; for one re-raised from a DataLoader worker, the original message
    without the worker's traceback (its last line, after the exception's name)."""
    text = str(error)
    if text.startswith(_WORKER_MESSAGE_START) and _WORKER_TRACEBACK_MARK in text:
        marker = f"{type(error).__name__}: "
        position = text.rfind(marker)
        if position >= 0:
            text = text[position + len(marker):]
    return text.strip()
