"""What was answered and how it is going: /predictions (the prediction log, closed),
/monitoring/drift (input drift per feature), /monitoring/live (the web page's view)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Dict, Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request

from ..auth import access, predict_guard
from ..context import gateway_of
from ..errors import BadRequest, NotFound, Unavailable
from ..prediction_log import PAGE_AT_MOST
from ..scopes import Grant
from ..settings import GatewaySettings


def router(settings: GatewaySettings) -> APIRouter:
    routes = APIRouter(tags=["monitoring"])

    @routes.get("/predictions", summary="The prediction log, oldest first, a page at a time")
    async def predictions(request: Request,
                          model: Optional[str] = Query(None, description="Only this model"),
                          since: Optional[str] = Query(
                              None, description="ISO 8601 time (UTC if no zone) or Unix "
                                                "seconds: only predictions from then on"),
                          after: int = Query(0, ge=0, le=2**62, description="The `next_after` "
                                             "of the previous page"),
                          limit: int = Query(100, ge=1, le=PAGE_AT_MOST),
                          _: Grant = Depends(access("GET", "/predictions"))) -> Dict[str, Any]:
        log = gateway_of(request).monitoring.log
        if log is None:
            raise NotFound("the prediction log is off (MLPLATFORM_GATEWAY_PREDICTION_LOG=false "
                           "or MONITORING=false)")
        moment = _moment(since) if since else None
        try:
            items = await asyncio.to_thread(log.page, model, moment, after, limit)
        except Exception as exc:  # the database is down: say so, do not 500
            raise Unavailable(f"the prediction log's database cannot be read: "
                              f"{str(exc)[:300]}") from exc
        next_after = items[-1]["id"] if len(items) == limit else None
        query = {k: v for k, v in (("model", model), ("since", since)) if v}
        return {"predictions": items, "next_after": next_after,
                "next": None if next_after is None else
                "/predictions?" + urlencode({**query, "after": next_after, "limit": limit})}

    @routes.get("/monitoring/drift", summary="Input drift (PSI) per feature against the "
                "version's training profile", dependencies=predict_guard(settings))
    async def drift(request: Request, model: Optional[str] = Query(
            None, description="NAME (the served version), NAME@ALIAS or NAME/VERSION; "
                              "without it: every model version with enough inputs")) -> Any:
        gateway = gateway_of(request)
        if model is None:
            return {"models": await gateway.monitoring.drift.reports()}
        served = await gateway.directory.resolve(model)
        return await gateway.monitoring.drift.report(served.name, served.version or "")

    @routes.get("/monitoring/live", summary="Per model over the last 30 s: requests per "
                "second, p50/p99 latency, server-error rate", dependencies=predict_guard(settings))
    async def live(request: Request) -> Any:
        return gateway_of(request).monitoring.live.summary()

    return routes


def _moment(since: str) -> datetime:
    try:
        if since.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(since), timezone.utc)
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"since={since!r} is neither an ISO 8601 time nor Unix seconds",
                         field="since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
