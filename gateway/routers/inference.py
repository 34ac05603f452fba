"""Plain REST in, the model's answer out: /forward, /forward_batch, /evaluate, /predict,
/predict_scenario.  Handlers only read the request, resolve the model and hand
over to ``scoring``."""
from __future__ import annotations

import asyncio
import functools
from typing import Any, Optional

from fastapi import APIRouter, Query, Request

from mlplatform.pyfunc_models.wire import documents_request, image_request

from .. import answer_rows, chunked, openapi, parsing, scoring
from ..auth import predict_guard
from ..context import gateway_of
from ..errors import BadRequest
from ..prediction_log import image_summary
from ..evaluation import evaluate
from ..routing import DirectRoute
from ..settings import GatewaySettings

MODEL_HELP = ("Any served model: NAME (the served version), NAME@ALIAS or NAME/VERSION "
              "(default: the route's model).")
MODEL_QUERY = Query(None, description=MODEL_HELP)
# /forward reads ``?model=`` itself and documents it here: FastAPI's parameter solving for
# one Optional[str] query parameter was ~40 % of the gateway's in-process time per call
# (cProfile: field_annotation_is_sequence on every request, fastapi 0.115); routing.py.
MODEL_PARAMETER = {"name": "model", "in": "query", "required": False,
                   "schema": {"type": "string"}, "description": MODEL_HELP}


def holds_the_log(handler):
    """A batch route: the prediction log holds its writes while it runs (answers first,
    monitoring.py).  FastAPI reads the handler's own signature through ``__wrapped__``."""
    @functools.wraps(handler)
    async def route(request: Request, **parameters: Any) -> Any:
        with gateway_of(request).monitoring.batch_in_flight():
            return await handler(request, **parameters)
    return route


def router(settings: GatewaySettings) -> APIRouter:
    # The single-call routes take only the request: DirectRoute skips FastAPI's per-call
    # dependency solving (routing.py); batch routes keep documented query parameters.
    routes = APIRouter(dependencies=predict_guard(settings), route_class=DirectRoute)

    @routes.post("/forward", tags=["inference"], summary="One input -> the model's answer",
                 openapi_extra={**openapi.forward_body(), "parameters": [MODEL_PARAMETER]})
    async def forward(request: Request) -> Any:
        gateway = gateway_of(request)
        model = request.query_params.get("model")
        served = await gateway.directory.resolve(model or settings.forward_model, not model)
        served, shadow = await scoring.routed(
            gateway, served, request.headers.get(settings.canary_key_header))
        parameters = parsing.parameters(request, served)
        if parsing.is_multipart(request):
            image = await parsing.uploaded(request, "image")
            if served.input_format != "base64":
                raise BadRequest(f"model {served.name!r} takes JSON, not an image", field="image")
            body = image_request(image, served.name)
            data = image_summary(image)
        else:
            data = await parsing.json_body(request)
            if served.input_format == "base64":
                raise BadRequest(f"model {served.name!r} takes an image: send "
                                 "multipart/form-data with the file in field 'image'",
                                 field="image")
            if not parameters:  # shared with concurrent calls (parameters are per request)
                answer, served = await scoring.score_with_shadow(gateway, served, data, shadow)
                return scoring.answered(gateway, served, data, answer)
            body = documents_request([data], served.name)
        if parameters:
            body["parameters"] = parameters
        answers, served = await scoring.on_served_version(
            gateway, served, lambda model: scoring.infer(gateway, model, body))
        return scoring.answered(gateway, served, data, answers[0])

    @routes.post("/forward_batch", tags=["inference"],
                 summary="Many inputs -> answers in input order",
                 openapi_extra=openapi.batch_body())
    @holds_the_log
    async def forward_batch(request: Request, model: Optional[str] = MODEL_QUERY) -> Any:
        gateway = gateway_of(request)
        served = await gateway.directory.resolve(model or settings.batch_model, not model)
        with await parsing.batch_upload(request) as upload:
            if parsing.takes_csv(upload, served):
                return await chunked.answer(gateway, served, upload.file, upload.filename, None)
            rows, _ = await parsing.batch_rows(upload, served, settings.zip_limits, None)
        answers, ids, served = await scoring.score_batch(gateway, served, rows)
        gateway.monitoring.batch_size("/forward_batch", served.name, len(answers))
        gateway.monitoring.batch("/forward_batch", served, rows, answers)

        def report() -> bytes:  # 100k+ rows of answers: rendered off the event loop
            return (answer_rows.opening(served, len(answers))
                    + answer_rows.rows_json(served, 0, ids, None, answers) + answer_rows.CLOSING)

        return scoring.with_model(await asyncio.to_thread(report), served)

    @routes.post("/evaluate", tags=["inference"],
                 summary="/forward_batch plus metrics against labels",
                 openapi_extra=openapi.batch_body(evaluate=True))
    @holds_the_log
    async def evaluate_route(request: Request, model: Optional[str] = MODEL_QUERY,
                             label: Optional[str] = Query(
                                 None, description="Label column (default from settings: "
                                                   "label)")) -> Any:
        gateway = gateway_of(request)
        served = await gateway.directory.resolve(model or settings.batch_model, not model)
        label = label or settings.label_column
        with await parsing.batch_upload(request) as upload:
            if parsing.takes_csv(upload, served):
                return await chunked.answer(gateway, served, upload.file, upload.filename, label)
            rows, truth = await parsing.batch_rows(upload, served, settings.zip_limits,
                                                   label)
        answers, ids, served = await scoring.score_batch(gateway, served, rows)
        gateway.monitoring.batch_size("/evaluate", served.name, len(answers))
        gateway.monitoring.batch("/evaluate", served, rows, answers)

        def report() -> bytes:  # metrics and rows computed and rendered off the event loop
            return (answer_rows.opening(served, len(answers), evaluate(truth, answers))
                    + answer_rows.rows_json(served, 0, ids, truth, answers) + answer_rows.CLOSING)

        return scoring.with_model(await asyncio.to_thread(report), served)

    async def one_transaction(request: Request, reference: str) -> Any:
        gateway = gateway_of(request)
        served = await gateway.directory.resolve(reference, default=True)
        served, shadow = await scoring.routed(
            gateway, served, request.headers.get(settings.canary_key_header))
        data = await parsing.json_body(request)
        if not isinstance(data, dict):
            raise BadRequest("expected one transaction as a JSON object", field="body")
        answer, served = await scoring.score_with_shadow(gateway, served, data, shadow)
        return scoring.answered(gateway, served, data, answer)

    @routes.post("/predict", tags=["fraud"], summary="Binary fraud on one transaction",
                 openapi_extra=openapi.json_body(openapi.TRANSACTION))
    async def predict(request: Request) -> Any:
        return await one_transaction(request, settings.predict_model)

    @routes.post("/predict_scenario", tags=["fraud"], summary="Fraud scenario on one transaction",
                 openapi_extra=openapi.json_body(openapi.TRANSACTION))
    async def predict_scenario(request: Request) -> Any:
        return await one_transaction(request, settings.scenario_model)

    return routes
