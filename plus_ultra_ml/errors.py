"""Errors a user can act on. Each message names what is wrong and how to fix it.

The CLI prints these as one sentence (no traceback) and exits with the code given here.
"""

from __future__ import annotations


class PlusUltraError(Exception):
    """Base of every error meant for the user; `exit_code` is what the CLI returns."""

    exit_code = 1


class DatabaseUnreadableError(PlusUltraError):
    """The database file is missing, not SQLite, empty, truncated, a directory or locked."""

    exit_code = 2


class SourceUnreadableError(PlusUltraError):
    """A source file to ingest is empty, not text in UTF-8, not valid gzip, CSV or Parquet."""

    exit_code = 2


class DataContractError(PlusUltraError):
    """The data breaks the contract (DESIGN §2); carries the structured validation report."""

    exit_code = 1

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
