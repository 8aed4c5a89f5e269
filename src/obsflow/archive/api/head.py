"""``HEAD`` wherever ``GET`` is (RFC 9110 section 9.3.2): same status and headers, no body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEAD_SCOPE_KEY", "HeadAsGet"]

HEAD_SCOPE_KEY = "obsflow.head"
"""Set in the ASGI scope of a ``HEAD`` request answered as ``GET`` (file responses read it)."""


class HeadAsGet:
    """ASGI middleware: answer ``HEAD`` as ``GET`` (same status and headers), without the body.

    RFC 9110 wants HEAD wherever GET is; the schema documents GET only.  File
    responses see :data:`HEAD_SCOPE_KEY` and do not read the file.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_SCOPE_KEY: True}, receive, headers_only)
