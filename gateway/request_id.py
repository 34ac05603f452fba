"""``X-Request-ID``: accepted from the caller (or generated), returned on the answer,
passed to MLServer with every V2 call made for the request, and written in the
gateway's log lines.

A pure ASGI middleware and a context variable: no Starlette ``BaseHTTPMiddleware``
(which costs a task per request), so the hot path pays one header scan and, when
the caller sent none, one counter step: ids are ``<random per process>-<n>``,
unique across gateways without a ``uuid4`` (an ``os.urandom`` call) per request.
"""
from __future__ import annotations

import contextvars
import itertools
import logging
import re
import secrets
import time
from typing import Optional

from .metrics import record_request
from .request_context import REQUEST, SERVED

HEADER = b"x-request-id"
REQUEST_ID: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("request_id",
                                                                           default=None)
# What a caller may send: printable, no spaces, bounded (it lands in logs and headers).
_VALID = re.compile(rb"^[\x21-\x7e]{1,128}$")
_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count(1)


def new_request_id() -> bytes:
    return f"{_PREFIX}-{next(_COUNTER):x}".encode()


def current_request_id() -> Optional[str]:
    return REQUEST_ID.get()


class RequestIdMiddleware:
    """The request's id; with ``metrics`` (monitoring on), also its arrival time for what
    is recorded of it, and its count and duration once answered.  One middleware for
    both: each ASGI layer costs every request a coroutine and a ``send`` wrapper
    (bench_monitoring: the separate metrics layer was ~3 us a call)."""

    def __init__(self, app, metrics=None):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = None
        for key, value in scope.get("headers") or ():
            if key == HEADER:
                given = value
                break
        raw = given if given is not None and _VALID.match(given) else new_request_id()
        token = REQUEST_ID.set(raw.decode())
        started = time.perf_counter()
        arrival = REQUEST.set((started, scope["path"]))
        served = SERVED.set(None)
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER, raw)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.metrics is not None:
                record_request(self.metrics, scope, status[0], started)
            SERVED.reset(served)
            REQUEST.reset(arrival)
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


def configure_logging() -> None:
    """The gateway's own log lines carry the request id."""
    logger = logging.getLogger("mlplatform.gateway")
    if any(isinstance(f, RequestIdFilter) for f in logger.filters):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [request %(request_id)s] %(message)s"))
    handler.addFilter(RequestIdFilter())
    logger.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
