"""``/login`` and ``/logout``: the web session (a cookie) of an archive user.

``POST /login`` checks the password with :func:`~obsflow.archive.users.login`
and sets the session cookie (``HttpOnly``, ``SameSite=Lax``: other sites'
forms cannot send it); ``POST /logout`` deletes the session row and the
cookie.  Bad passwords count against the same per-address limiter as bad
API tokens and bad cookies (429 after too many).  ``next`` may only be a local path.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from obsflow.archive.api.deps import check_attempts, get_archive, record_failure
from obsflow.archive.users import SESSION_COOKIE, SESSION_HOURS, login, logout
from obsflow.archive.web.common import html_responses, query_params, render, web_caller
from obsflow.exceptions import AuthenticationError, TooManyAttemptsError

__all__ = ["router", "safe_next"]

router = APIRouter(tags=["web"])

_LOGIN_FORM = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["name", "password"],
        "properties": {"name": {"type": "string"}, "password": {"type": "string"},
                       "next": {"type": "string", "description": "local path to go to"}}}}}}}
_REDIRECT: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done: go to `next` (login) or `/` (logout)"}}


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site (``/...``, not ``//host``), else ``/``."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login", response_class=HTMLResponse, summary="Login form (HTML)",
            openapi_extra=query_params(next={"type": "string"}),
            responses=html_responses(s200="The login form"))
async def login_form(request: Request) -> HTMLResponse:
    """The login form."""
    caller = await run_in_threadpool(web_caller, request)
    return render(request, caller, "login.html", error=None,
                  next=safe_next(request.query_params.get("next")))


def _open_session(request: Request, name: str, password: str) -> str:
    with get_archive(request).session() as session, session.begin():
        return login(session, name, password, now=request.app.state.api_settings.clock())


@router.post("/login", response_class=RedirectResponse, summary="Log in (session cookie)",
             openapi_extra=_LOGIN_FORM, status_code=303,
             responses={**_REDIRECT, **html_responses(
                 s401="Wrong user name or password", s429="Too many failed logins")})
async def login_submit(request: Request) -> Response:
    """Check name and password; set the session cookie and go to ``next``."""
    form = await request.form()
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:256]
    target = safe_next(str(form.get("next", "/")))
    caller = await run_in_threadpool(web_caller, request)
    try:
        check_attempts(request)
    except TooManyAttemptsError as exc:
        refused = render(request, caller, "login.html", status=429, next=target,
                         error="Too many failed logins from this address; try again later.")
        refused.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
        return refused
    try:
        secret = await run_in_threadpool(_open_session, request, name, password)
    except AuthenticationError:
        record_failure(request)
        return render(request, caller, "login.html", status=401, next=target,
                      error="Wrong user name or password.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, secret, max_age=SESSION_HOURS * 3600, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    return response


def _close_session(request: Request, secret: str) -> None:
    with get_archive(request).session() as session, session.begin():
        logout(session, secret)


@router.post("/logout", response_class=RedirectResponse, summary="Log out", status_code=303,
             responses=_REDIRECT)
async def logout_submit(request: Request) -> Response:
    """End the web session and drop the cookie."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await run_in_threadpool(_close_session, request, secret)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
