"""Errors a user can act on. The CLI prints them as one clear message (no traceback unless ``--debug``).

Each error says what went wrong and where; ``hint`` says how to fix it.
"""

from __future__ import annotations


class CorrbenchError(Exception):
    """Base class: a problem with input, configuration or data that the user can fix."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(CorrbenchError, ValueError):
    """A malformed option, unknown name, or inconsistent configuration."""


class UnknownNameError(ConfigError, KeyError):
    """A method, benchmark or localiser name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return CorrbenchError.__str__(self)


class DataError(CorrbenchError):
    """Missing or malformed dataset files; the message names the file and the field."""


class MatcherContractError(CorrbenchError, RuntimeError):
    """A Matcher returned something that breaks the contract (shape, dtype, finiteness)."""

    exit_code = 3


class ResultsError(CorrbenchError):
    """Unreadable, inconsistent or mixed result files."""
