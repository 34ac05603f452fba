"""The gateway's error contract (seed 003), the same on every route.

* 400 ``bad request``: the request cannot be parsed or lacks what the route needs;
* 401 ``unauthorized``: a write route without a valid bearer token;
* 403 ``модель не смогла обработать данные``: the model was reached and failed;
  403 ``forbidden``: a valid token without the route's scope;
* 413 ``request too large``: the body is over the configured limit;
* 503 ``model server unavailable``: MLServer unreachable, timing out or not serving;
* anything unexpected: 500 ``internal error`` — logged here, no traceback sent.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .request_context import SERVED

BAD_REQUEST = "bad request"
MODEL_FAILED = "модель не смогла обработать данные"
UNAVAILABLE = "model server unavailable"
TOO_LARGE = "request too large"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"

log = logging.getLogger("mlplatform.gateway")


class GatewayError(Exception):
    status = 500
    message = "internal error"

    def __init__(self, detail: str, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self) -> Dict[str, Any]:
        return {"message": self.message, "detail": self.detail, **self.extra}


class BadRequest(GatewayError):
    status, message = 400, BAD_REQUEST


class Unauthorized(GatewayError):
    status, message = 401, UNAUTHORIZED


class Forbidden(GatewayError):
    """A valid token without the route's scope (``scope`` names the one missing).  The
    seed's 403 is the model's failure; this one says ``forbidden`` in ``message``."""

    status, message = 403, FORBIDDEN


MAX_REASON = 1000  # characters of a model's reason passed on (it may echo a huge input)


class ModelFailed(GatewayError):
    """The model answered with an error; ``detail`` is its reason, capped."""

    status, message = 403, MODEL_FAILED

    def __init__(self, detail: str, **extra: Any):
        if len(detail) > MAX_REASON:
            detail = f"{detail[:MAX_REASON]}... ({len(detail) - MAX_REASON} more characters)"
        super().__init__(detail, **extra)

    def body(self) -> Dict[str, Any]:
        return {"message": self.message, "reason": self.detail, **self.extra}


class NotFound(GatewayError):
    status, message = 404, "not found"


class Conflict(GatewayError):
    status, message = 409, "not ready"


class TooLarge(GatewayError):
    status, message = 413, TOO_LARGE


class UpstreamRefused(GatewayError):
    """The model server could not do what was asked (load a version); nothing changed."""

    status, message = 502, "model server refused"


class Unavailable(GatewayError):
    status, message = 503, UNAVAILABLE


class NotLoaded(Unavailable):
    """The V2 server has no such model or version loaded (its 404): maybe just retired."""


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        served = SERVED.get()
        if served is not None:  # the model the call reached: in the metrics' labels too
            headers["X-Model-Name"] = served[0]
            if served[1]:
                headers["X-Model-Version"] = served[1]
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', []))}: {error.get('msg')}"
            for error in exc.errors())
        return JSONResponse(BadRequest(problems or "invalid request").body(), status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"message": "internal error", "detail": type(exc).__name__},
                            status_code=500)
