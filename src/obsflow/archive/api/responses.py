"""The documented answers of the archive's routes: the shared JSON error body and status tables.

Every route lists in the OpenAPI schema each status it can answer, so a
client (or schemathesis) knows them all: ``responses=errors(404, 422)``
adds the JSON :class:`ErrorBody` for those statuses; the VO endpoints use
:func:`votable_errors` (their errors are VOTable documents).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "VIEWER_ERRORS", "binary", "errors", "votable_errors"]


class ErrorBody(BaseModel):
    """The JSON body of every error of the API (``details`` only for 422)."""

    error: str = Field(description="What was wrong, in one line")
    status: int = Field(description="The HTTP status, repeated")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Every invalid parameter (422 only)")


_WHY = {
    400: "A request the archive cannot answer (the message says why)",
    401: "Unknown, expired or malformed credentials (bearer token or session cookie)",
    404: "No such resource, or one the caller may not see (never told apart)",
    409: "The resource's state does not allow it (e.g. a UWS job no longer PENDING)",
    416: "The Range is outside the file; Content-Range gives its size",
    422: "A parameter fails validation (details list every one)",
    429: "Too many bad credentials from this address; Retry-After says when to retry",
    503: "The stored file failed its checksum check; the operators must restore it",
}

VIEWER_ERRORS = (401, 422, 429)
"""Statuses of any route that reads the caller's credentials."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries: the JSON :class:`ErrorBody` for each status."""
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in statuses}


def binary(description: str, *media_types: str) -> dict[str, Any]:
    """A ``responses=`` entry of a file answer (any bytes) in ``media_types``."""
    return {"description": description,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types}}


def votable_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries of VO errors: a VOTable with ``QUERY_STATUS=ERROR``."""
    return {status: {"description": f"{_WHY[status]} (VOTable, QUERY_STATUS=ERROR)",
                     "content": {"application/x-votable+xml": {"schema": {"type": "string"}}}}
            for status in statuses}
