"""Bearer tokens (``mlplatform token create``): who may call a route, by the scope the
route contract gives it (``contract.py``): 401 without a valid token, 403 ``forbidden``
naming the scope a valid token lacks."""
from __future__ import annotations

import asyncio
from typing import Callable, List, Optional

from fastapi import Depends, Request

from . import contract
from .errors import Forbidden, Unauthorized
from .scopes import LIFECYCLE, PREDICT, Grant
from .settings import GatewaySettings


async def grant_of(request: Request) -> Grant:
    """What the request's bearer token may do; 401 without a valid one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the header Authorization: Bearer <token> "
                           "(mlplatform token create --group <name> --scope <scope>)")
    grant = await asyncio.to_thread(request.app.state.gateway.store.grant_of, token.strip())
    if grant is None:
        raise Unauthorized("the token is not valid (unknown or revoked)")
    return grant


def require(grant: Grant, scope: str, model: Optional[str] = None) -> None:
    """403 unless ``grant`` has ``scope`` (for ``model``, for a lifecycle scope)."""
    if not grant.allows(scope, model):
        missing = grant.missing(scope, model)
        raise Forbidden(f"the token (id {grant.token_id}) lacks the {missing!r} scope "
                        f"(or 'admin'); it has: {', '.join(sorted(grant.scopes))}",
                        scope=missing)


def _model_named(request: Request) -> Optional[str]:
    """The model a lifecycle route names in its path (/models/<name>/...) or ``?model=``
    (its name only, without @alias or /version)."""
    named = (request.path_params.get("name") if request.url.path.startswith("/models/")
             else request.query_params.get("model"))
    return named.split("@")[0].split("/")[0] if named else None


def access(method: str, path: str) -> Callable:
    """The dependency of the route ``method path``: its grant, checked against the scope
    the contract gives it.  A lifecycle route that names no model yet (a training id)
    passes with any lifecycle scope; its handler checks the model (``require``)."""
    scope = contract.route(method, path).scope
    if not scope:
        raise KeyError(f"{method} {path} needs no token in the contract (gateway/contract.py)")

    async def checked(request: Request) -> Grant:
        grant = await grant_of(request)
        require(grant, scope, _model_named(request) if scope == LIFECYCLE else None)
        return grant

    return checked


def predict_guard(settings: GatewaySettings) -> List:
    """Dependencies of the predict routes: none when they are open (the default), else a
    token with the ``predict`` scope."""
    if settings.public_predict:
        return []

    async def predict_access(request: Request) -> None:
        require(await grant_of(request), PREDICT)

    return [Depends(predict_access)]
