"""Refuse bodies over the size limit with 413, before they are read into memory."""
from __future__ import annotations

import json

from .errors import TOO_LARGE, TooLarge


class BodyTooLarge(TooLarge):
    """Raised while a body is read; a ``TooLarge``, so the app answers it with 413 itself."""


class BodySizeLimit:
    """ASGI middleware: checks Content-Length up front and counts chunked bodies as they arrive."""

    def __init__(self, app, limit_bytes: int):
        self.app = app
        self.limit = limit_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge("the body is over the limit", limit_bytes=self.limit)
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"message": TOO_LARGE, "detail": "the body is over the limit",
                           "limit_bytes": self.limit}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
