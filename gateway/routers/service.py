"""The gateway itself: web page, liveness, readiness, the models it can reach."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict, List

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from mlplatform.pyfunc_models.conventions import ModelReference

from ..auth import predict_guard
from ..context import gateway_of
from ..errors import GatewayError
from ..metrics import CONTENT_TYPE
from ..settings import GatewaySettings

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"


def router(settings: GatewaySettings) -> APIRouter:
    routes = APIRouter(tags=["service"])
    page = PAGE.read_text(encoding="utf-8")
    route_models = sorted({ModelReference.parse(reference, None).name for reference in (
        settings.forward_model, settings.batch_model, settings.predict_model,
        settings.scenario_model)})

    @routes.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        """The web page: pick a model, send JSON or an image, see the answer."""
        return HTMLResponse(page)

    @routes.get("/health", summary="The gateway process is up")
    async def health() -> Dict[str, str]:
        return {"status": "ok"}

    @routes.get("/metrics", response_class=PlainTextResponse,
                summary="Prometheus metrics: requests, latency, answers, drift, jobs, batch "
                        "and sharing sizes")
    async def metrics(request: Request) -> Response:
        return Response(await gateway_of(request).monitoring.render(), media_type=CONTENT_TYPE)

    @routes.get("/ready", summary="MLServer and the routes' models are ready")
    async def ready(request: Request) -> JSONResponse:
        gateway = gateway_of(request)

        async def served_version_ready(name: str) -> bool:
            # The version the gateway would call, not MLServer's unversioned "ready" (that
            # is its highest version: the one a deploy is still loading).
            try:
                served = await gateway.directory.resolve(name)
            except GatewayError:
                return False
            return await gateway.upstream.ready(served.name, served.version)

        checks = await asyncio.gather(gateway.upstream.ready(),
                                      *(served_version_ready(name) for name in route_models))
        models = dict(zip(route_models, checks[1:]))
        ok = checks[0] and all(models.values())
        return JSONResponse({"ready": ok, "model_server": checks[0], "models": models},
                            status_code=200 if ok else 503)

    @routes.get("/models", summary="The models the gateway can reach, with the version served",
                dependencies=predict_guard(settings))
    async def models(request: Request) -> List[Dict[str, Any]]:
        """From what the gateway has cached: ``stale`` when the registry record is older
        than the refresh interval (e.g. MLflow unreachable); never waits on MLflow for a
        model it has seen."""
        directory = gateway_of(request).directory
        found = []
        for name in await directory.served_names():
            try:
                served = await directory.resolve(name)
            except GatewayError as exc:
                found.append({"name": name, "version": None, "error": exc.detail, "stale": True})
                continue
            found.append({"name": served.name, "version": served.version,
                          "input": served.input_format, "output": served.output_format,
                          "stale": directory.is_stale(name)})
        return found

    return routes
