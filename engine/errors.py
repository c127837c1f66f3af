"""veille's own error types.

Every error a user can fix is a :class:`VeilleError`: the command line prints its message as one
paragraph and exits non-zero; a traceback means a bug in veille, never bad input.
"""
from __future__ import annotations


class VeilleError(Exception):
    """Base of every error veille raises on purpose (bad input, bad rules, bad model)."""

    exit_code = 2


class InputError(VeilleError):
    """Telemetry or patient input that cannot be read at all (file, schema, type).

    Row-level problems never raise: those rows are quarantined with a reason.
    """

    def __init__(self, message: str, *, path: str | None = None, column: str | None = None,
                 row: int | None = None):
        where = []
        if path:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path, self.column, self.row = path, column, row


class SpecError(VeilleError):
    """A detector spec or parameter that is not valid (unknown fn, bad duration, missing param)."""


class RuleError(VeilleError):
    """One or more errors in a rule pack. ``errors`` holds each with file, line and column."""

    def __init__(self, message: str, errors: list | None = None):
        super().__init__(message)
        self.errors = errors or []


class OutputError(VeilleError):
    """An output path that cannot be written (unknown extension, unwritable folder)."""


class ModelError(VeilleError):
    """A model artifact that cannot be saved or loaded safely: a file missing, changed, truncated
    or edited, a type outside the trusted list, features or library versions that differ from the
    running engine's. ``path`` is the file at fault; the message starts with it."""

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class Interrupted(VeilleError):
    """The run was stopped (Ctrl-C, SIGTERM); the message says what was and was not written."""

    exit_code = 130
