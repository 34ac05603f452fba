"""A model's life (seed 003 names and verbs): /add_data, /retrain, /metrics/<id>,
/deploy/<id>, /rollback, /models/<name>/versions.  Every route needs a token; a
training is visible only to its token's group.  The work is in ``lifecycle.py``."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from .. import lifecycle, parsing
from ..auth import access, require
from ..context import gateway_of
from ..errors import BadRequest, Conflict, NotFound, UpstreamRefused
from ..scopes import LIFECYCLE, Grant
from ..settings import GatewaySettings

MODEL = Query(..., description="The registered model, e.g. fraud", min_length=1)
# Ids are database integers: a larger number is a 400 naming the parameter, not a 500.
TRAINING_ID = Path(..., ge=1, le=2**31 - 1, description="The id PUT /retrain answered")


def router(settings: GatewaySettings) -> APIRouter:
    routes = APIRouter(tags=["lifecycle"])

    @routes.put("/add_data", summary="Append labelled rows (CSV, as for /evaluate) to the "
                "model's training data; all rows valid or nothing written",
                openapi_extra={"requestBody": {"required": True, "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                       "properties": {"file": {
                                                           "type": "string",
                                                           "format": "binary"}}}}}}})
    async def add_data(request: Request, model: str = MODEL,
                       _: Grant = Depends(access("PUT", "/add_data"))) -> Any:
        with await parsing.batch_upload(request) as upload:
            data = await asyncio.to_thread(upload.file.read)
            return await asyncio.to_thread(lifecycle.add_data, settings, model, data,
                                           upload.filename)

    @routes.put("/retrain", status_code=202, summary="Start the training pipeline on the "
                "model's data; returns the training id at once")
    async def retrain(request: Request, model: str = MODEL,
                      grant: Grant = Depends(access("PUT", "/retrain"))) -> Any:
        gateway = gateway_of(request)
        await asyncio.to_thread(_retrainable, model)
        training = await asyncio.to_thread(gateway.store.add_training, grant.group, model)
        if training is None:
            raise Conflict(f"a training of {model} is already running; wait for it "
                           "(GET /metrics/<id>)")
        gateway.worker.wake.set()
        return JSONResponse({"id": training.id, "model": model, "status": "Requested",
                             "metrics_url": f"/metrics/{training.id}"}, status_code=202)

    async def own_training(request: Request, training_id: int, grant: Grant):
        store = gateway_of(request).store
        training = await asyncio.to_thread(store.training, training_id)
        if training is None or training.group != grant.group:
            raise NotFound(f"no training {training_id}")
        require(grant, LIFECYCLE, training.model)
        return training, await asyncio.to_thread(store.job, training.job_id)

    @routes.get("/metrics/{training_id}", summary="A training's status, metrics and plots, "
                "beside the champion's on the same held-out rows")
    async def metrics(request: Request, training_id: int = TRAINING_ID,
                      grant: Grant = Depends(access("GET", "/metrics/{training_id}"))) -> Any:
        training, job = await own_training(request, training_id, grant)
        return await asyncio.to_thread(lifecycle.training_report, settings, training, job)

    @routes.get("/metrics/{training_id}/plots/{name}", summary="One plot of a training (PNG)",
                response_class=Response)
    async def plot(request: Request, name: str, training_id: int = TRAINING_ID,
                   grant: Grant = Depends(access("GET", "/metrics/{training_id}/plots/{name}"))
                   ) -> Response:
        training, _ = await own_training(request, training_id, grant)
        data = await asyncio.to_thread(lifecycle.plot, settings, training, name)
        return Response(data, media_type="image/png")

    @routes.post("/deploy/{training_id}", summary="Serve the training's version as champion; "
                 "answers once it answers requests")
    async def deploy(request: Request, training_id: int = TRAINING_ID,
                     grant: Grant = Depends(access("POST", "/deploy/{training_id}"))) -> Any:
        training, job = await own_training(request, training_id, grant)
        version = await asyncio.to_thread(lifecycle.deployable_version, settings, training, job)
        async with gateway_of(request).switching[training.model], refusals_counted(
                request, training.model):
            answer = await asyncio.to_thread(lifecycle.promote, settings, training.model,
                                             version)
        gateway_of(request).directory.forget(training.model)
        return answer

    @routes.post("/rollback", summary="Serve the previous champion again")
    async def rollback(request: Request, model: str = MODEL,
                       _: Grant = Depends(access("POST", "/rollback"))) -> Any:
        async with gateway_of(request).switching[model], refusals_counted(request, model):
            answer = await asyncio.to_thread(lifecycle.rollback, settings, model)
        gateway_of(request).directory.forget(model)
        return answer

    @routes.get("/models/{name}/versions", summary="Versions with aliases, runs, metrics, "
                "created and deployed times")
    async def versions(request: Request, name: str,
                       _: Grant = Depends(access("GET", "/models/{name}/versions"))) -> Any:
        rows = await asyncio.to_thread(lifecycle.versions, settings, name)
        trained = await asyncio.to_thread(gateway_of(request).store.trainings_by_version, name)
        return [{**row, "training_id": trained.get(row["version"])} for row in rows]

    return routes


@contextlib.asynccontextmanager
async def refusals_counted(request: Request, model: str):
    """A version the model server refused (502) counts in /metrics by reason."""
    try:
        yield
    except UpstreamRefused as exc:
        gateway_of(request).monitoring.metrics.refused(model, exc.detail)
        raise


def _retrainable(model: str) -> None:
    from mlplatform.pyfunc_models.training import trainer_for

    try:
        trainer_for(model)
    except KeyError as exc:
        raise BadRequest(exc.args[0], field="model") from exc
