"""The archive's errors; they are defined with every other error in :mod:`obsflow.exceptions`."""

from __future__ import annotations

from obsflow.exceptions import (
    ArchiveError,
    AuthenticationError,
    ChecksumMismatchError,
    ProductFileError,
    ProductNotFoundError,
    VOQueryError,
)

__all__ = [
    "ArchiveError",
    "AuthenticationError",
    "ChecksumMismatchError",
    "ProductFileError",
    "ProductNotFoundError",
    "VOQueryError",
]
