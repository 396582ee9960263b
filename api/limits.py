"""A bound on request bodies, enforced before anything reads them.

Pure ASGI, outside every route: a declared ``Content-Length`` over the limit is answered
``413`` at once, before authentication and without reading a byte of the body (a client
waiting on ``Expect: 100-continue`` is never asked to send it). A body without a length
(chunked) is counted as it streams, and reading it stops with ``413`` at the first chunk
past the limit. Responses pass through untouched, so the live stream is unaffected.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATUS: Final = 413


def _detail(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the limit. An HTTPException, so that FastAPI's body
    parsing lets it through (anything else becomes a 400) and answers it as JSON."""

    def __init__(self, limit: int) -> None:
        super().__init__(STATUS, _detail(limit), headers={"Connection": "close"})


def _declared_length(scope: Scope) -> int | None:
    """The largest ``Content-Length`` the request declares; None without one. A malformed
    one is the server's to refuse (uvicorn answers 400 before the app sees it)."""
    found: int | None = None
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                n = int(value)
            except ValueError:
                continue
            found = n if found is None else max(found, n)
    return found


class BodyLimit:
    """``app.add_middleware(BodyLimit, limit=...)``: bodies of at most ``limit`` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # Read outside FastAPI's body parsing (a route reading the stream itself): answer
            # here, unless a response is already under way, which the server then cuts short.
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": _detail(self.limit)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": STATUS,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # the unread rest of the body would be taken for the next request
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
