"""Errors of the archive (all :class:`obsflow.exceptions.ObsflowError`).

::

    ObsflowError
    └── ArchiveError(RuntimeError)           anything the archive refuses
        ├── ProductNotFoundError(LookupError) no such product, or one the caller may not see
        ├── ProductFileError(ValueError)     a file that cannot be registered (what is missing)
        ├── ChecksumMismatchError            stored bytes differ from the recorded sha256
        ├── AuthenticationError(PermissionError) unknown, expired or malformed credentials
        └── VOQueryError(ValueError)         a bad SIA2 / TAP (ADQL) request (VOTable error, 400)

The HTTP layer maps them to 404, 400, 503 and 401.
"""

from __future__ import annotations

from obsflow.exceptions import ObsflowError

__all__ = [
    "ArchiveError",
    "AuthenticationError",
    "ChecksumMismatchError",
    "ProductFileError",
    "ProductNotFoundError",
    "VOQueryError",
]


class ArchiveError(ObsflowError, RuntimeError):
    """Base of every archive error."""


class ProductNotFoundError(ArchiveError, LookupError):
    """No such product, or one the caller may not see (the two are never told apart)."""


class ProductFileError(ArchiveError, ValueError):
    """A file that cannot be registered; the message says what is missing or wrong."""


class ChecksumMismatchError(ArchiveError):
    """A stored file's sha256 differs from the one recorded at registration."""


class AuthenticationError(ArchiveError, PermissionError):
    """Unknown, expired or malformed credentials."""


class VOQueryError(ArchiveError, ValueError):
    """A Virtual Observatory request the archive cannot answer: bad parameter or ADQL.

    ``status`` is the HTTP status of the VOTable error document (400 unless set).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
