"""The gateway app: plain REST routes mapped onto V2 ``/v2/models/<name>/infer``.

Run it with ``mlplatform up`` (port 8080), or ``uvicorn mlplatform.gateway.app:app``.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple

import orjson
import pandas as pd
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, ORJSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from mlplatform.pyfunc_models.table import encode_frame
from mlplatform.pyfunc_models.wire import (
    WireFormatError,
    decode_base64_response,
    decode_json_response,
    documents_request,
    image_request,
    images_request,
)

from . import batch
from .coalescing import Coalescer
from .directory import ModelDirectory, ServedModel
from .errors import (
    BadRequest,
    Conflict,
    ModelFailed,
    NotFound,
    Unauthorized,
    Unavailable,
    install,
)
from .evaluation import evaluate
from .files import JobFiles
from .grpc_upstream import GrpcUpstream
from .jobs import JobWorker
from .limits import BodySizeLimit
from .settings import GatewaySettings
from .store import SUCCEEDED, Store
from .table import infer_in_parts, table_answers
from .upstream import V2Upstream

PARAM_HEADER = "x-param-"
MODEL_QUERY = Query(None, description="Any served model, as NAME or NAME@ALIAS "
                                      "(default: the route's configured model).")


def create_app(settings: Optional[GatewaySettings] = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.upstream = V2Upstream(settings.mlserver_url, settings.timeout)
        # Table batches go over gRPC when the server's gRPC address is known (faster for
        # large tables, docs/benchmarks.md), else as JSON over the same REST client.
        # Single requests stay on REST: over gRPC they were slower (docs/benchmarks.md).
        app.state.tables = (
            GrpcUpstream(settings.mlserver_grpc, settings.timeout, settings.max_body_bytes)
            if settings.mlserver_grpc else app.state.upstream)
        app.state.coalescer = Coalescer(max_batch=max(1, settings.coalesce_max_batch))
        app.state.directory = ModelDirectory(app.state.upstream, settings.tracking_uri,
                                             settings.alias)
        app.state.store = Store(settings.database_url)
        app.state.files = JobFiles(settings.jobs_storage)
        app.state.worker = JobWorker(app.state.store, settings)
        await app.state.worker.start()
        yield
        await app.state.worker.stop()
        await app.state.upstream.close()
        if app.state.tables is not app.state.upstream:
            await app.state.tables.close()

    app = FastAPI(title="mlplatform gateway", version="0.1.0", lifespan=lifespan,
                  default_response_class=ORJSONResponse,
                  description="Plain REST over the V2 (Open Inference) protocol. Errors: 400 "
                              "bad request, 401 unauthorized, 403 the model failed, 413 too "
                              "large, 503 model server unavailable.")
    app.state.settings = settings
    install(app)
    app.add_middleware(BodySizeLimit, limit_bytes=settings.max_body_bytes)
    _routes(app, settings)
    return app


def _routes(app: FastAPI, settings: GatewaySettings) -> None:
    def directory(request: Request) -> ModelDirectory:
        return request.app.state.directory

    def upstream(request: Request) -> V2Upstream:
        return request.app.state.upstream

    async def token_group(request: Request) -> str:
        """The group of the request's bearer token; 401 without a valid one."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send the header Authorization: Bearer <token> "
                               "(mlplatform token create --group <name>)")
        group = await asyncio.to_thread(request.app.state.store.group_of, token.strip())
        if group is None:
            raise Unauthorized("the token is not valid (unknown or revoked)")
        return group

    async def predict_access(request: Request) -> None:
        await token_group(request)

    # Open predict routes skip the dependency entirely: FastAPI's dependency solving was
    # ~20 % of the gateway's own time per /forward call (py-spy).
    guarded = [] if settings.public_predict else [Depends(predict_access)]

    async def score_document(request: Request, served: ServedModel, document: Any) -> Any:
        """One JSON document's answer; concurrent calls to a model share V2 requests."""
        server = upstream(request)

        async def send(documents: List[Any]) -> List[Any]:
            return await _infer(server, served, documents_request(documents, served.name))

        if settings.coalesce_max_batch <= 1:
            return (await send([document]))[0]
        return await request.app.state.coalescer.score((served.name, served.version or ""),
                                                       document, send)

    page = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        """The web page: pick a model, send JSON or an image, see the answer."""
        return HTMLResponse(page)

    @app.get("/health", tags=["service"], summary="The gateway process is up")
    async def health() -> Dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], summary="MLServer and the routes' models are ready")
    async def ready(request: Request) -> JSONResponse:
        server = upstream(request)
        names = {settings.forward_model, settings.batch_model, settings.predict_model,
                 settings.scenario_model}
        names = sorted(n.partition("@")[0] for n in names)
        checks = await asyncio.gather(server.ready(), *(server.ready(n) for n in names))
        models = dict(zip(names, checks[1:]))
        ok = checks[0] and all(models.values())
        return JSONResponse({"ready": ok, "model_server": checks[0], "models": models},
                            status_code=200 if ok else 503)

    @app.get("/models", tags=["service"], summary="The models the gateway can reach")
    async def models(request: Request) -> List[Dict[str, Any]]:
        found = []
        for name in await directory(request).served_names():
            served = await directory(request).resolve(name)
            found.append({"name": served.name, "version": served.version,
                          "alias": served.alias, "input": served.input_format,
                          "output": served.output_format})
        return found

    @app.post("/forward", tags=["inference"], dependencies=guarded, summary="One input -> the model's answer",
              openapi_extra=_forward_openapi())
    async def forward(request: Request, model: Optional[str] = MODEL_QUERY) -> Any:
        served = await directory(request).resolve(model or settings.forward_model)
        if _is_multipart(request):
            image = await _uploaded(request, "image")
            if served.input_format != "base64":
                raise BadRequest(f"model {served.name!r} takes JSON, not an image", field="image")
            body = image_request(image, served.name)
            parameters = {k[len(PARAM_HEADER):]: v for k, v in request.headers.items()
                          if k.startswith(PARAM_HEADER)}
            if parameters:
                body["parameters"] = parameters
        else:
            data = await _json_body(request)
            if served.input_format == "base64":
                raise BadRequest(f"model {served.name!r} takes an image: send multipart/form-data "
                                 "with the file in field 'image'", field="image")
            return _with_model(_shaped(served, await score_document(request, served, data)), served)
        answers = await _infer(upstream(request), served, body)
        return _with_model(_shaped(served, answers[0]), served)

    @app.post("/forward_batch", tags=["inference"], dependencies=guarded,
              summary="Many inputs -> answers in input order",
              openapi_extra=_batch_openapi())
    async def forward_batch(request: Request, model: Optional[str] = MODEL_QUERY) -> Any:
        served = await directory(request).resolve(model or settings.batch_model)
        rows, _ = await _batch(request, served, settings, label=None)
        answers, ids = await _score_batch(request.app.state, served, rows)
        results = [{"row": i, **key, **_as_dict(_shaped(served, a))}
                   for i, (key, a) in enumerate(zip(ids, answers))]
        return _with_model({"model": served.name, "version": served.version,
                            "rows": len(results), "results": results}, served)

    @app.post("/evaluate", tags=["inference"], dependencies=guarded,
              summary="/forward_batch plus metrics against labels",
              openapi_extra=_batch_openapi(evaluate=True))
    async def evaluate_route(request: Request, model: Optional[str] = MODEL_QUERY,
                             label: Optional[str] = Query(None, description="Label column "
                                                          "(default from settings: label)")) -> Any:
        served = await directory(request).resolve(model or settings.batch_model)
        rows, truth = await _batch(request, served, settings, label=label or settings.label_column)
        answers, ids = await _score_batch(request.app.state, served, rows)
        report = evaluate(truth, answers)
        results = [{"row": i, **key, "label": t, **_as_dict(_shaped(served, a))}
                   for i, (key, t, a) in enumerate(zip(ids, truth, answers))]
        return _with_model({"model": served.name, "version": served.version,
                            "metrics": report, "results": results}, served)

    @app.get("/metadata", tags=["models"], dependencies=guarded, summary="Provenance of the served model")
    async def metadata(request: Request, model: Optional[str] = MODEL_QUERY) -> Any:
        served = await directory(request).resolve(model or settings.forward_model)
        return await asyncio.to_thread(_metadata, settings.tracking_uri, served)

    async def one_transaction(request: Request, reference: str) -> Any:
        served = await directory(request).resolve(reference)
        data = await _json_body(request)
        if not isinstance(data, dict):
            raise BadRequest("expected one transaction as a JSON object", field="body")
        return _with_model(await score_document(request, served, data), served)

    @app.post("/predict", tags=["fraud"], dependencies=guarded, summary="Binary fraud on one transaction",
              openapi_extra=_transaction_openapi())
    async def predict(request: Request) -> Any:
        return await one_transaction(request, settings.predict_model)

    @app.post("/predict_scenario", tags=["fraud"], dependencies=guarded,
              summary="Fraud scenario on one transaction",
              openapi_extra=_transaction_openapi())
    async def predict_scenario(request: Request) -> Any:
        return await one_transaction(request, settings.scenario_model)

    @app.post("/jobs", tags=["jobs"], status_code=202, summary="Submit a file to a model's "
              "file target; returns the job id at once (needs a token)",
              openapi_extra=_job_openapi())
    async def submit_job(request: Request, group: str = Depends(token_group)) -> Any:
        form = await _form(request)
        upload, model, target = form.get("file"), form.get("model"), form.get("target")
        if not isinstance(upload, UploadFile):
            raise BadRequest("missing file field 'file' in the multipart form", field="file")
        for field, value in (("model", model), ("target", target)):
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(f"missing form field {field!r}", field=field)
        await asyncio.to_thread(_check_file_target, settings, model, target)
        job_id = uuid.uuid4().hex
        name = PurePosixPath((upload.filename or "input").replace("\\", "/")).name or "input"
        key = f"{job_id}/input/{name}"
        await asyncio.to_thread(request.app.state.files.put, key, upload.file)  # streamed
        job = await asyncio.to_thread(request.app.state.store.add_job, group, model, target,
                                      name, key, job_id)
        request.app.state.worker.wake.set()
        return JSONResponse(_job_view(job), status_code=202)

    async def own_job(request: Request, job_id: str, group: str):
        job = await asyncio.to_thread(request.app.state.store.job, job_id)
        if job is None or job.group != group:  # another group's job does not exist for you
            raise NotFound(f"no job {job_id!r}")
        return job

    @app.get("/jobs/{job_id}", tags=["jobs"], summary="Job status (Requested, Running, "
             "Succeeded, Failed) with timestamps and error text")
    async def job_status(request: Request, job_id: str, group: str = Depends(token_group)) -> Any:
        return _job_view(await own_job(request, job_id, group))

    @app.get("/jobs/{job_id}/result", tags=["jobs"], summary="The job's output file (streamed)")
    async def job_result(request: Request, job_id: str, group: str = Depends(token_group)):
        job = await own_job(request, job_id, group)
        if job.status != SUCCEEDED:
            raise Conflict(f"job {job_id} is {job.status}", status=job.status, error=job.error)
        return StreamingResponse(
            request.app.state.files.chunks(job.output_key), media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{job.output_name}"'})


def _job_view(job) -> Dict[str, Any]:
    return {**job.public(), "status_url": f"/jobs/{job.id}", "result_url": f"/jobs/{job.id}/result"}


def _check_file_target(settings: GatewaySettings, model: str, target: str) -> None:
    """The model must be an imported one with ``target`` as a file target (400 otherwise)."""
    import tempfile

    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from mlplatform.pyfunc_models.imported.descriptors import ImportSpec

    name, _, alias = model.partition("@")
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias or settings.alias)
        root = client.get_model_version_download_uri(name, version.version).rstrip("/")
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/MLmodel",
                                                       dst_path=folder,
                                                       tracking_uri=settings.tracking_uri)
            with open(path) as handle:
                flavor = yaml.safe_load(handle)["flavors"]["python_function"]
    except MlflowException as exc:
        raise BadRequest(f"unknown model {model!r}: {exc.message}", field="model") from exc
    except Exception as exc:  # the registry is down
        raise Unavailable(f"the model registry cannot be read ({type(exc).__name__})") from exc
    config = flavor.get("config") or {}  # MLflow stores model_config as the flavor's "config"
    if "targets" not in config:
        raise BadRequest(f"model {model!r} is not an imported folder: it has no file targets",
                         field="model")
    spec = ImportSpec.from_config(config)
    found = next((t for t in spec.targets if t.matches(target)), None)
    if found is None or found.task_type == "JsonToJson":
        names = ", ".join(repr(t.name) for t in spec.targets if t.task_type != "JsonToJson")
        raise BadRequest(f"model {model!r} has no file target {target!r}; file targets: "
                         f"{names or 'none'}", field="target")


# ---------------------------------------------------------------- requests to the model


async def _score_batch(state: Any, served: ServedModel,
                       rows: Any) -> Tuple[List[Any], List[Dict[str, Any]]]:
    """Answers in input order, and each row's id fields.

    A table goes to a model that ``accepts_table`` as columns (one request, no JSON per
    row); otherwise every row is one JSON document (or one image) of a single request.
    """
    server: V2Upstream = state.upstream
    if isinstance(rows, pd.DataFrame):
        ids = ([{"id": v} for v in rows["id"].tolist()] if "id" in rows.columns
               else [{}] * len(rows))
        if served.accepts_table:
            columns = await infer_in_parts(state.tables.infer_table, served.name,
                                           encode_frame(rows), served.version,
                                           state.settings.table_request_bytes)
            try:
                return table_answers(columns, len(rows)), ids
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelFailed(f"the model's table answer is not usable: {exc}") from exc
        rows = batch.records_of(rows)
        return await _infer(server, served, documents_request(rows, served.name)), ids
    if rows and isinstance(rows[0], tuple):  # images from a zip
        request = images_request([content for _, content in rows], served.name)
        return await _infer(server, served, request), [{"file": name} for name, _ in rows]
    if served.accepts_table and all(isinstance(r, dict) for r in rows):
        return await _score_batch(state, served, pd.DataFrame.from_records(rows))
    return (await _infer(server, served, documents_request(rows, served.name)),
            [{"id": r["id"]} if isinstance(r, dict) and "id" in r else {} for r in rows])


async def _infer(server: V2Upstream, served: ServedModel, body: Dict[str, Any]) -> List[Any]:
    """The answers, one per document sent (JSON values, or base64 text for image answers)."""
    answer = await server.infer(served.name, body, served.version)
    try:
        if served.output_format == "base64":
            decoded = decode_base64_response(answer)
        else:
            decoded = decode_json_response(answer)
    except WireFormatError as exc:
        raise ModelFailed(f"the model's answer is not in the expected format: {exc}") from exc
    expected = body["inputs"][0]["shape"][0] if isinstance(body["inputs"][0]["data"], list) else 1
    answers = decoded if expected > 1 else [decoded]
    if len(answers) != expected:
        raise ModelFailed(f"the model answered {len(answers)} items for {expected} inputs")
    return answers


def _shaped(served: ServedModel, answer: Any) -> Any:
    if served.output_format == "base64":
        return {"image": answer, "content_type": "image/png"}
    return answer


def _as_dict(answer: Any) -> Dict[str, Any]:
    return answer if isinstance(answer, dict) else {"answer": answer}


def _with_model(payload: Any, served: ServedModel) -> JSONResponse:
    headers = {"X-Model-Name": served.name}
    if served.version:
        headers["X-Model-Version"] = served.version
    return ORJSONResponse(payload, headers=headers)


# ---------------------------------------------------------------- reading requests


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest("the body is empty; send JSON", field="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON ({exc})", field="body") from exc


async def _form(request: Request):
    try:
        return await request.form(max_part_size=request.app.state.settings.max_body_bytes)
    except Exception as exc:  # malformed multipart
        if getattr(exc, "status", None) == 413:
            raise
        raise BadRequest(f"unreadable multipart body ({exc})", field="body") from exc


async def _uploaded(request: Request, field: str) -> bytes:
    form = await _form(request)
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise BadRequest(f"missing file field {field!r} in the multipart form", field=field)
    return await upload.read()


async def _batch(request: Request, served: ServedModel, settings: GatewaySettings,
                 label: Optional[str]) -> Tuple[Any, List[Any]]:
    """The rows to score (a DataFrame from CSV, a list of dicts from JSON, or (name, bytes)
    images from a zip) and, with ``label``, the truth."""
    content_type = request.headers.get("content-type", "")
    if _is_multipart(request):
        form = await _form(request)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("missing file field 'file' in the multipart form", field="file")
        data, filename = await upload.read(), upload.filename or "upload"
    else:
        data, filename = await request.body(), "body"
    name = filename.lower()
    if served.input_format == "base64":
        if not (name.endswith(".zip") or "zip" in content_type or data[:2] == b"PK"):
            raise BadRequest(f"model {served.name!r} takes images: upload a .zip", field="file")
        archive = batch.read_zip(data, filename, settings.max_body_bytes * 4)
        rows = archive.entries
        if label is None:
            return rows, []
        missing = [n for n, _ in rows if n not in archive.labels]
        if missing:
            raise BadRequest(f"no label for {', '.join(missing[:5])}: add labels.csv (file,label) "
                             "or put each image in a folder named after its class", field="file")
        return rows, [archive.labels[n] for n, _ in rows]
    if name.endswith(".csv") or "text/csv" in content_type:
        frame = batch.read_csv(data, filename)
        if label is None:
            return frame, []
        if label not in frame.columns:
            raise BadRequest(f"the CSV has no label column {label!r}", field="label")
        return frame.drop(columns=[label]), frame[label].tolist()
    else:
        try:
            rows = batch.json_records(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"{filename!r} is neither CSV nor a JSON list ({exc})",
                             field="file") from exc
    if label is None:
        return rows, []
    if not all(isinstance(r, dict) and label in r for r in rows):
        raise BadRequest(f"every row needs the label column {label!r}", field="label")
    truth = [r[label] for r in rows]
    return [{k: v for k, v in r.items() if k != label} for r in rows], truth


# ---------------------------------------------------------------- metadata


def _metadata(tracking_uri: str, served: ServedModel) -> Dict[str, Any]:
    import json
    import tempfile

    import mlflow
    from mlflow.tracking import MlflowClient

    from mlplatform.pyfunc_models.provenance import ProvenanceError, model_provenance

    if served.version is None:
        raise Unavailable(f"the registry has no version for {served.name}@{served.alias}")
    try:
        found = model_provenance(tracking_uri, served.name, version=served.version)
    except ProvenanceError as exc:
        raise Unavailable(str(exc)) from exc
    example = None
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    root = client.get_model_version_download_uri(served.name, served.version).rstrip("/")
    with tempfile.TemporaryDirectory() as folder, contextlib.suppress(Exception):
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/input_example.json",
                                                   dst_path=folder, tracking_uri=tracking_uri)
        with open(path) as handle:
            example = json.load(handle)
    registry, onnx = found["registry"], found["onnx"] or {}
    return {
        "model_name": served.name,
        "version": served.version,
        "alias": served.alias,
        "aliases": registry["aliases"],
        "run_id": registry["run_id"],
        "experiment_name": registry["experiment_name"],
        "commit_hash": onnx.get("git_commit"),
        "saved_at": onnx.get("saved_at"),
        "input_example": example,
        "onnx": found["onnx"],
    }


# ---------------------------------------------------------------- OpenAPI examples


def _json_body_schema(examples: Dict[str, Any]) -> Dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {}, "examples": {k: {"value": v} for k, v in examples.items()}}}}}


def _forward_openapi() -> Dict[str, Any]:
    spec = _json_body_schema({"echo": {"a": 10}})
    spec["requestBody"]["content"]["multipart/form-data"] = {"schema": {
        "type": "object", "properties": {"image": {"type": "string", "format": "binary"}},
        "required": ["image"]}}
    return spec


def _job_openapi() -> Dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file", "model", "target"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "model": {"type": "string", "example": "mmf_delivery"},
            "target": {"type": "string", "example": "Batch scoring"}}}}}}}


def _transaction_openapi() -> Dict[str, Any]:
    from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION

    return _json_body_schema({"transaction": EXAMPLE_TRANSACTION})


def _batch_openapi(evaluate: bool = False) -> Dict[str, Any]:
    from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION

    row = {**EXAMPLE_TRANSACTION, **({"label": 1} if evaluate else {})}
    spec = _json_body_schema({"transactions": [row, row]})
    header = ",".join(row)
    spec["requestBody"]["content"]["text/csv"] = {
        "schema": {"type": "string"},
        "example": header + "\n" + ",".join(str(v).lower() if isinstance(v, bool) else str(v)
                                            for v in row.values())}
    spec["requestBody"]["content"]["multipart/form-data"] = {"schema": {
        "type": "object", "properties": {"file": {"type": "string", "format": "binary",
                                                  "description": ".csv, .json or .zip of images"}},
        "required": ["file"]}}
    return spec


app = create_app()
