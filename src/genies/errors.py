"""User-facing errors.

Every failure a user can cause (bad path, malformed data, unknown id, bad config) raises a
``GeniesError``. The CLI turns it into a one-line ``error: ...`` message and a non-zero exit,
never a traceback. Library users can catch the specific subclasses.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GeniesError(Exception):
    """Base class of all errors meant to be shown to a user as one line."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class DataError(GeniesError):
    """A dataset file or archive is missing, unreadable or malformed."""


class ValidationError(DataError):
    """Examples break the GENIES data rules."""


class UnknownNameError(GeniesError):
    """An id/name (distribution, suite, model, intervention) that does not exist."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], *, hint: str | None = None) -> None:
        self.kind, self.name = kind, name
        choices = sorted(set(choices))
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif choices and len(choices) <= 12:
            msg += "; choose from " + ", ".join(choices)
        super().__init__(msg, hint=hint)


class ConfigError(GeniesError):
    """An invalid configuration (unknown key, wrong type)."""


class ModelError(GeniesError):
    """A model cannot be resolved, converted or loaded."""


class StoreError(GeniesError):
    """The result store cannot be read or written."""


class InterruptedRun(GeniesError):
    """The user interrupted a run; finished work is kept."""

    exit_code = 130
