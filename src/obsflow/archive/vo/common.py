"""What the SIA2 and TAP routers share: parameters, the caller, MAXREC, VOTable answers.

VO clients cannot read the API's JSON errors, so every failure of a VO
request — bad parameter, bad ADQL, bad or rate-limited credentials, even an
unexpected bug — answers a VOTable with ``QUERY_STATUS=ERROR`` (HTTP 400,
401, 429 or 500).  The caller is found exactly like the API's
``ViewerDep`` (:func:`~obsflow.archive.api.deps.identify`: bearer token or
session cookie, the same limiter of bad credentials per address).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from obsflow.archive.api.deps import ApiSettings, get_archive, identify
from obsflow.archive.api.responses import votable_errors
from obsflow.archive.context import Archive
from obsflow.archive.policy import Viewer
from obsflow.archive.vo.votable import (
    VOTABLE_TYPE,
    availability_xml,
    capabilities_xml,
    error_votable,
)
from obsflow.exceptions import (
    AuthenticationError,
    QueryValueError,
    TooManyAttemptsError,
    VOQueryError,
)

__all__ = ["DEFAULT_MAXREC", "MAX_MAXREC", "VO_RESPONSES", "VoCall", "add_vosi_endpoints",
           "XML_OK", "add_query_endpoints", "openapi_params", "parse_maxrec", "read_params", "vo_answer", "xml_response"]

logger = logging.getLogger(__name__)

DEFAULT_MAXREC = 10_000
"""Rows returned when the request gives no MAXREC."""

MAX_MAXREC = 100_000
"""Largest MAXREC honoured (larger values are lowered to it)."""

MAX_PARAM_LENGTH = 20_000
"""Longest parameter value accepted, characters."""


@dataclass(frozen=True)
class VoCall:
    """One VO request: parameters (upper-case names), the archive, who asks, when, where."""

    params: dict[str, list[str]]
    archive: Archive
    viewer: Viewer
    now: datetime
    base_url: str


async def read_params(request: Request) -> dict[str, list[str]]:
    """Query-string and form parameters, names upper-cased, values in order."""
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        form = await request.form()
        items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    params: dict[str, list[str]] = {}
    for key, value in items:
        if len(value) > MAX_PARAM_LENGTH:
            raise VOQueryError(f"{key.upper()}: value longer than {MAX_PARAM_LENGTH} characters")
        params.setdefault(key.upper(), []).append(value)
    return params


def parse_maxrec(params: dict[str, list[str]]) -> int:
    """MAXREC (default :data:`DEFAULT_MAXREC`, at most :data:`MAX_MAXREC`)."""
    values = params.get("MAXREC")
    if not values:
        return DEFAULT_MAXREC
    text = values[-1].strip()
    if text.isdigit() and len(text) > len(str(MAX_MAXREC)):
        return MAX_MAXREC  # any longer number is larger (and may be too long for int())
    try:
        maxrec = int(text)
    except ValueError:
        raise VOQueryError(f"MAXREC: {text[:40]!r} is not a whole number") from None
    if maxrec < 0:
        raise VOQueryError("MAXREC must be >= 0")
    return min(maxrec, MAX_MAXREC)


def _viewer(request: Request, archive: Archive, now: datetime) -> Viewer:
    try:
        with archive.session() as session:
            return identify(request, session, now)
    except TooManyAttemptsError as exc:
        raise VOQueryError(str(exc), 429) from exc
    except AuthenticationError as exc:
        raise VOQueryError(str(exc), 401) from exc


def _error(exc: VOQueryError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 429 and isinstance(exc.__cause__, TooManyAttemptsError):
        headers = {"Retry-After": str(math.ceil(exc.__cause__.retry_after_s))}
    return Response(error_votable(str(exc)), status_code=exc.status, media_type=VOTABLE_TYPE,
                    headers=headers)


async def vo_answer(request: Request, handler: Callable[[VoCall], bytes | Response]
                    ) -> Response:
    """Run ``handler`` (in a worker thread) and answer its VOTable (or its own response),
    or a VOTable error."""
    try:
        params = await read_params(request)
        archive = get_archive(request)
        settings: ApiSettings = request.app.state.api_settings
        now = settings.clock()
        viewer = await run_in_threadpool(_viewer, request, archive, now)
        call = VoCall(params, archive, viewer, now, str(request.base_url).rstrip("/"))
        body = await run_in_threadpool(handler, call)
    except VOQueryError as exc:
        return _error(exc)
    except QueryValueError as exc:  # a value the catalog cannot hold
        return _error(VOQueryError(str(exc)))
    except HTTPException as exc:  # e.g. a malformed form body
        return _error(VOQueryError(str(exc.detail), exc.status_code))
    except Exception:  # a VO client can only read VOTable errors
        logger.exception("VO request %s failed", request.url.path)
        return _error(VOQueryError("internal error of the archive; see the server log", 500))
    return body if isinstance(body, Response) else Response(body, media_type=VOTABLE_TYPE)


def openapi_params(params: dict[str, dict[str, Any]], required: Sequence[str] = ()
                   ) -> dict[str, dict[str, Any]]:
    """``openapi_extra`` of a VO endpoint: ``params`` (name -> JSON schema) in the query string
    of GET and in the form body of POST (names are case-insensitive; upper case shown).

    Returns ``{"GET": ..., "POST": ...}``; the values go to ``openapi_extra``.
    """
    query = [{"name": name, "in": "query", "required": name in required, "schema": schema,
              "style": "form", "explode": True} for name, schema in params.items()]
    form = {"type": "object", "properties": params, "required": list(required)}
    body = {"required": bool(required),
            "content": {"application/x-www-form-urlencoded": {"schema": form}}}
    return {"GET": {"parameters": query}, "POST": {"requestBody": body}}


VO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A VOTable of results (QUERY_STATUS=OK; OVERFLOW when MAXREC cut it)",
          "content": {VOTABLE_TYPE: {"schema": {"type": "string"}}}},
    **votable_errors(400, 401, 429),
}
"""The documented answers of a VO query endpoint."""


def add_query_endpoints(router: APIRouter, path: str, handler: Callable[[VoCall], bytes | Response],
                        *, name: str, summary: str, about: str,
                        params: dict[str, dict[str, Any]], required: Sequence[str] = ()) -> None:
    """Add a VO query endpoint at ``path``: GET (query string) and POST (form body).

    DALI services take the same parameters both ways; both answer with
    :func:`vo_answer` of ``handler``.  ``params`` (name -> JSON schema) and
    ``required`` document them in the OpenAPI (:func:`openapi_params`); the
    operations are named ``name`` and ``name_form``; ``about`` describes them.
    """
    extra = openapi_params(params, required)

    async def answer(request: Request) -> Response:
        return await vo_answer(request, handler)

    for method, suffix, where in (("GET", "", "query string"),
                                  ("POST", "_form", "form body or query string")):
        router.add_api_route(path, answer, methods=[method], name=f"{name}{suffix}",
                             response_class=Response, responses=VO_RESPONSES,
                             summary=summary + (", form body" if suffix else ""),
                             description=f"{about} Parameters in the {where}.",
                             openapi_extra=extra[method])

XML_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "The VOSI document", "content": {"text/xml": {"schema": {"type": "string"}}}}}
"""The documented answer of a VOSI endpoint."""


def xml_response(body: bytes) -> Response:
    """A VOSI document."""
    return Response(body, media_type="text/xml")


def add_vosi_endpoints(router: APIRouter, service: str, about: str) -> None:
    """Add VOSI ``/capabilities`` and ``/availability`` to a VO service's router.

    ``service`` names the capability document (``"sia2"``, ``"tap"``); its
    endpoint URLs are absolute, built from the request's own host and port
    (pyvo follows them); ``about`` describes the capabilities in the API docs.
    """

    @router.get("/capabilities", response_class=Response, summary="VOSI capabilities",
                description=about, responses=XML_OK)
    def capabilities(request: Request) -> Response:
        base = str(request.base_url).rstrip("/") + router.prefix
        return xml_response(capabilities_xml(service, base, (DEFAULT_MAXREC, MAX_MAXREC)))

    @router.get("/availability", response_class=Response, summary="VOSI availability",
                responses=XML_OK)
    def availability() -> Response:
        """Always available while the server runs."""
        return xml_response(availability_xml())
