"""The app factory: routers, error handlers and state of the archive's HTTP API.

Every error answers JSON ``{"error": "<message>", "status": <code>}``
(:class:`~obsflow.archive.api.responses.ErrorBody`); validation errors add
``"details"``.  ``HEAD`` is answered wherever ``GET`` is.  Other packages (VO endpoints, web
pages) add their routers with ``create_app(archive, routers=[...])``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from obsflow import __version__
from obsflow.archive.api import products, search
from obsflow.archive.api.deps import ApiSettings, BadTokenLimiter, ViewerDep
from obsflow.archive.api.download import ChecksumCache
from obsflow.archive.api.head import HeadAsGet
from obsflow.archive.api.responses import errors
from obsflow.archive.context import Archive
from obsflow.exceptions import (
    ArchiveError,
    AuthenticationError,
    ChecksumMismatchError,
    ProductNotFoundError,
    RangeNotSatisfiableError,
    TooManyAttemptsError,
)

__all__ = ["create_app", "error_response"]

logger = logging.getLogger(__name__)

meta = APIRouter(prefix="/api", tags=["service"])


@meta.get("/health", summary="Liveness check")
def health() -> dict[str, str]:
    """``{"status": "ok"}`` while the server runs."""
    return {"status": "ok", "version": __version__}


@meta.get("/whoami", summary="Who the credentials belong to", responses=errors(401, 429))
def whoami(viewer: ViewerDep) -> dict[str, Any]:
    """The caller's user name, admin flag and programs (anonymous: name null)."""
    return {"name": viewer.name, "is_admin": viewer.is_admin,
            "programs": sorted(viewer.programs)}


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    """The JSON error every endpoint answers."""
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status,
                        headers=headers)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return error_response(exc.status_code, str(exc.detail), headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
        first = problems[0] if problems else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid parameter {where}: {first.get('msg', 'invalid')}"
        return error_response(422, message, details=problems)

    @app.exception_handler(ProductNotFoundError)
    async def _missing(_: Request, exc: ProductNotFoundError) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(TooManyAttemptsError)
    async def _blocked(_: Request, exc: TooManyAttemptsError) -> JSONResponse:
        return error_response(429, str(exc), {"Retry-After": str(math.ceil(exc.retry_after_s))})

    @app.exception_handler(AuthenticationError)
    async def _auth(_: Request, exc: AuthenticationError) -> JSONResponse:
        return error_response(401, str(exc), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RangeNotSatisfiableError)
    async def _unsatisfiable(_: Request, exc: RangeNotSatisfiableError) -> JSONResponse:
        return error_response(416, str(exc), {"Content-Range": f"bytes */{exc.size}",
                                              "Accept-Ranges": "bytes"})

    @app.exception_handler(ChecksumMismatchError)
    async def _corrupt(_: Request, exc: ChecksumMismatchError) -> JSONResponse:
        logger.error("refusing to serve a corrupted product: %s", exc)
        return error_response(503, "the stored product failed its checksum check; "
                                   "the archive operators must restore it")

    @app.exception_handler(ArchiveError)
    async def _archive(_: Request, exc: ArchiveError) -> JSONResponse:
        return error_response(400, str(exc))


def create_app(archive: Archive, settings: ApiSettings | None = None, *,
               routers: Sequence[APIRouter] = ()) -> FastAPI:
    """Build the archive's FastAPI app.

    Parameters
    ----------
    archive : Archive
        The catalog and store to serve (not closed by the app).
    settings : ApiSettings, optional
        Clock, rate limits, page size.
    routers : sequence of APIRouter
        Extra routers (e.g. ``/vo``, web pages) included after the API's own.
    """
    settings = settings or ApiSettings()
    app = FastAPI(title="obsflow archive", version=__version__,
                  description="Search, metadata, previews and downloads of obsflow products.")
    app.state.archive = archive
    app.state.api_settings = settings
    app.state.limiter = BadTokenLimiter(settings.bad_token_limit, settings.bad_token_window_s)
    app.state.checksums = ChecksumCache()
    for router in (meta, search.router, products.router, *routers):
        app.include_router(router)
    _install_handlers(app)
    app.add_middleware(HeadAsGet)
    return app


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers on the request's path (for ``Allow`` of a 405)."""
    allowed = {method for method in _METHODS
               if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                      for route in app.router.routes)}
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)

