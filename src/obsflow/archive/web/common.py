"""What the web routers share: templates, the logged-in viewer, HTML answers.

The browser's identity is the session cookie only (:data:`SESSION_COOKIE`,
set by the login form, ``HttpOnly`` and ``SameSite=Lax``; changes of state
are ``POST`` forms).  A stale or unknown cookie makes the visitor anonymous
and is cleared, instead of the API's 401, and counts against the address
like a bad API token (:func:`~obsflow.archive.api.deps.identify`); a
visitor whose address sent too many bad credentials gets the 429 page.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from obsflow import __version__
from obsflow.archive.api.deps import ApiSettings, get_archive, identify
from obsflow.archive.policy import ANONYMOUS, Viewer
from obsflow.archive.users import SESSION_COOKIE
from obsflow.archive.web.display import iso_of_mjd, size_text
from obsflow.exceptions import AuthenticationError, TooManyAttemptsError

__all__ = ["TEMPLATES", "WebCaller", "breakable", "html_responses", "now_of", "query_params", "render",
           "web_caller"]

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
"""The page templates (autoescaped)."""


def breakable(identifier: str) -> Markup:
    """``identifier`` (escaped) with line-break opportunities after ``_`` only, so that a
    product id wraps between its parts, never mid-word (CSS ``.pid`` forbids other breaks)."""
    return Markup("_<wbr>").join(escape(part) for part in str(identifier).split("_"))


TEMPLATES.env.filters["breakable"] = breakable
TEMPLATES.env.filters["iso_mjd"] = iso_of_mjd
TEMPLATES.env.filters["filesize"] = size_text


class WebCaller:
    """The visitor of one page: viewer, whether their cookie must be cleared, now.

    ``retry_after_s`` is set (seconds) when the visitor's address sent too
    many bad credentials: every page then answers 429.
    """

    def __init__(self, viewer: Viewer, stale_cookie: bool, now: datetime,
                 retry_after_s: float | None = None) -> None:
        self.viewer = viewer
        self.stale_cookie = stale_cookie
        self.now = now
        self.retry_after_s = retry_after_s


def html_responses(**statuses: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a page: each status (``s200="..."``) answers HTML."""
    return {int(key[1:]): {"description": why, "content": {"text/html": {"schema": {"type": "string"}}}}
            for key, why in statuses.items()}


def query_params(**schemas: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` documenting a page's optional query parameters (name -> JSON schema)."""
    return {"parameters": [{"name": name, "in": "query", "required": False, "schema": schema}
                           for name, schema in schemas.items()]}


def now_of(request: Request) -> datetime:
    """Now, from the app's clock."""
    settings: ApiSettings = request.app.state.api_settings
    return settings.clock()


def web_caller(request: Request, *, cookie_only: bool = True) -> WebCaller:
    """The visitor: their session cookie's user, else anonymous (a stale cookie is dropped).

    ``cookie_only=False`` (file downloads a script or notebook fetches) also
    takes an API token in the ``Authorization`` header.
    """
    now = now_of(request)
    try:
        with get_archive(request).session() as session:
            return WebCaller(identify(request, session, now, cookie_only=cookie_only), False, now)
    except TooManyAttemptsError as exc:
        return WebCaller(ANONYMOUS, False, now, exc.retry_after_s)
    except AuthenticationError:
        return WebCaller(ANONYMOUS, True, now)


def render(request: Request, caller: WebCaller, template: str, status: int = 200,
           **context: Any) -> HTMLResponse:
    """Render ``template`` with the visitor and ``context`` (the 429 page for a blocked visitor)."""
    headers = None
    if caller.retry_after_s is not None:
        template, status = "error.html", 429
        context = {"heading": "Too many attempts",
                   "message": "Too many bad sign-ins or session cookies from this address; "
                              "try again later."}
        headers = {"Retry-After": str(math.ceil(caller.retry_after_s))}
    response = TEMPLATES.TemplateResponse(
        request, template, {"viewer": caller.viewer, "now": caller.now, "version": __version__,
                            **context}, status_code=status, headers=headers)
    if caller.stale_cookie:
        response.delete_cookie(SESSION_COOKIE)
    return response
