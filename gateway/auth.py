"""Bearer tokens (``mlplatform token create``): who may call the closed routes."""
from __future__ import annotations

import asyncio
from typing import List

from fastapi import Depends, Request

from .errors import Unauthorized
from .settings import GatewaySettings


async def token_group(request: Request) -> str:
    """The group of the request's bearer token; 401 without a valid one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the header Authorization: Bearer <token> "
                           "(mlplatform token create --group <name>)")
    group = await asyncio.to_thread(request.app.state.gateway.store.group_of, token.strip())
    if group is None:
        raise Unauthorized("the token is not valid (unknown or revoked)")
    return group


async def _predict_access(request: Request) -> None:
    await token_group(request)


def predict_guard(settings: GatewaySettings) -> List:
    """Dependencies of the predict routes: none when they are open (the default)."""
    return [] if settings.public_predict else [Depends(_predict_access)]
