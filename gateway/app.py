"""The gateway app: plain REST routes mapped onto V2 ``/v2/models/<name>/infer``.

Run it with ``mlplatform up`` (port 8080), or ``uvicorn mlplatform.gateway.app:app``.
This module only assembles: the shared objects (``context.Gateway``), the
middleware (body size limit, ``X-Request-ID``), the error contract and one
router per area (``routers/``).
"""
from __future__ import annotations

import contextlib
import gc
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, ORJSONResponse
from fastapi.staticfiles import StaticFiles

from . import openapi
from .coalescing import Coalescer
from .context import Gateway, gateway_of
from .directory import ModelDirectory
from .errors import install
from .files import JobFiles
from .follower import AliasFollower
from .limits import BodySizeLimit
from .metrics import GatewayMetrics
from .monitoring import Monitoring
from .registry import RegistryReader
from .request_id import RequestIdMiddleware, configure_logging
from .routers import inference, jobs, lifecycle, models, monitoring, service
from .settings import GatewaySettings
from .splitting import Shadowing
from .store import Store
from .upstream import V2Upstream

TITLE = "mlplatform gateway"


def build(settings: GatewaySettings, upstream: Optional[V2Upstream] = None,
          registry: Optional[RegistryReader] = None,
          metrics: Optional[GatewayMetrics] = None) -> Gateway:
    """The shared objects; ``upstream`` and ``registry`` may be given (tests with fakes)."""
    upstream = upstream or V2Upstream(settings.mlserver_url, settings.timeout)
    registry = registry or RegistryReader(settings.tracking_uri, settings.target)
    if settings.mlserver_grpc:
        # Table batches go over gRPC when the server's gRPC address is known (faster for
        # large tables, docs/benchmarks.md), else as JSON over the same REST client.
        # Single requests stay on REST: over gRPC they were slower (docs/benchmarks.md).
        from .grpc_upstream import GrpcUpstream

        tables = GrpcUpstream(settings.mlserver_grpc, settings.timeout, settings.max_body_bytes)
    else:
        tables = upstream
    store = Store(settings.database_url)
    monitoring = Monitoring(settings, metrics or GatewayMetrics(), registry, store)
    coalescer = Coalescer(max_batch=max(1, settings.coalesce_max_batch))
    coalescer.on_send = monitoring.shared
    return Gateway(settings=settings, upstream=upstream, tables=tables, registry=registry,
                   directory=ModelDirectory(upstream, registry, settings.registry_ttl),
                   coalescer=coalescer, store=store, files=JobFiles(settings.jobs_storage),
                   shadowing=Shadowing(settings.shadow_max_in_flight), monitoring=monitoring)


def create_app(settings: Optional[GatewaySettings] = None,
               gateway: Optional[Gateway] = None) -> FastAPI:
    settings = settings or (gateway.settings if gateway else GatewaySettings())
    configure_logging()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from .jobs import JobWorker

        shared = app.state.gateway = gateway or build(settings, metrics=metrics)
        await shared.monitoring.start()
        shared.worker = JobWorker(shared.store, settings)
        await shared.worker.start()
        shared.follower = AliasFollower(shared)
        await shared.follower.start()
        # Everything loaded so far (FastAPI, pandas, numpy, ...) lives as long as the
        # process: keep it out of the cyclic GC's scans, which otherwise walk it on every
        # full collection (docs/benchmarks.md: gateway CPU per request).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await shared.follower.stop()
            await shared.worker.stop()
            await shared.monitoring.stop()
            await shared.upstream.close()
            await shared.registry.close()
            if shared.tables is not shared.upstream:
                await shared.tables.close()

    app = FastAPI(title=TITLE, version="0.1.0", lifespan=lifespan,
                  default_response_class=ORJSONResponse, openapi_url=None, docs_url=None,
                  redoc_url=None,
                  description="Plain REST over the V2 (Open Inference) protocol. Errors: 400 "
                              "bad request, 401 unauthorized, 403 the model failed, 413 too "
                              "large, 503 model server unavailable.")
    app.state.settings = settings
    metrics = gateway.monitoring.metrics if gateway is not None else GatewayMetrics()
    if gateway is not None:
        app.state.gateway = gateway
    install(app)
    app.add_middleware(BodySizeLimit, limit_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware, metrics=metrics if settings.monitoring else None)
    for area in (service, inference, models, jobs, lifecycle, monitoring):
        app.include_router(area.router(settings))
    _docs(app)
    return app


DOCS_ASSETS = "/docs/assets"


def _docs(app: FastAPI) -> None:
    """``/openapi.json`` (examples from the registry) and Swagger UI at ``/docs``, served
    with its own assets: FastAPI's default page loads Swagger UI from a CDN and stays
    blank on a machine without internet (swagger-ui-bundle-v2 ships Swagger UI 5, which
    renders OpenAPI 3.1)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        return JSONResponse(await openapi.document(request.app, gateway_of(request)))

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=TITLE + " - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


app = create_app()
