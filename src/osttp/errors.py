"""Errors the library raises for bad input; the CLI turns them into one line and exit code 2."""
from __future__ import annotations


class OsttpError(ValueError):
    """Bad input from the user: a wrong shape, dtype, name, value or file.

    A subclass of ValueError so that callers catching ValueError see it too."""


class DataError(OsttpError):
    """A dataset file is missing, truncated or fails its checksum."""
