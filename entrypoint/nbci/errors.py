"""Exceptions the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

from typing import Optional


class NbciError(Exception):
    """A usage or configuration problem the user can fix; its message says how."""


class ConfigError(NbciError):
    """An option or input has a value nbci cannot use."""


class InvalidNotebook(Exception):
    """The file is not a notebook nbci can read or run; the message says why (a result, not a usage
    error), ``line`` where in the file when known."""

    def __init__(self, message: str, line: Optional[int] = None) -> None:
        super().__init__(message)
        self.line = line


class NotANotebook(InvalidNotebook):
    """A text file named on the command line that is not a text notebook at all (no jupytext header,
    no cell markers): skipped, not invalid, so an unquoted glob such as ``content/*.md`` still passes."""


class NoNotebooksError(NbciError):
    """Discovery found nothing to run and ``--if-no-notebooks error`` is in force."""
