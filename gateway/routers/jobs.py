"""File jobs on imported models' file targets (seed 002 Async, seed 000 FileToFile /
FileToArtifact): submit, poll, download.  Every route needs a token; a job is
visible only to its token's group."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import PurePosixPath
from urllib.parse import quote
from typing import Any, Dict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from mlplatform.pyfunc_models.conventions import ModelReference, ModelReferenceError

from .. import openapi, parsing
from ..auth import access
from ..context import gateway_of
from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..scopes import Grant
from ..settings import GatewaySettings
from ..store import SUCCEEDED


def router(settings: GatewaySettings) -> APIRouter:
    routes = APIRouter(tags=["jobs"])

    @routes.post("/jobs", status_code=202, summary="Submit a file to a model's file target; "
                 "returns the job id at once (needs a token)", openapi_extra=openapi.job_body())
    async def submit_job(request: Request, grant: Grant = Depends(access("POST", "/jobs"))) -> Any:
        gateway = gateway_of(request)
        form = await parsing.form(request)
        upload, model, target = form.get("file"), form.get("model"), form.get("target")
        if not isinstance(upload, UploadFile):
            raise BadRequest("missing file field 'file' in the multipart form", field="file")
        for field, value in (("model", model), ("target", target)):
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(f"missing form field {field!r}", field=field)
        await asyncio.to_thread(_check_file_target, settings, model, target)
        job_id = uuid.uuid4().hex
        name = upload_name(upload.filename)
        key = f"{job_id}/input/{name}"
        await asyncio.to_thread(gateway.files.put, key, upload.file)  # streamed
        job = await asyncio.to_thread(gateway.store.add_job, grant.group, model, target, name, key,
                                      job_id)
        gateway.worker.wake.set()
        return JSONResponse(_job_view(job), status_code=202)

    async def own_job(request: Request, job_id: str, group: str):
        job = await asyncio.to_thread(gateway_of(request).store.job, job_id)
        if job is None or job.group != group:  # another group's job does not exist for you
            raise NotFound(f"no job {job_id!r}")
        return job

    @routes.get("/jobs/{job_id}", summary="Job status (Requested, Running, Succeeded, Failed) "
                "with timestamps and error text")
    async def job_status(request: Request, job_id: str,
                         grant: Grant = Depends(access("GET", "/jobs/{job_id}"))) -> Any:
        return _job_view(await own_job(request, job_id, grant.group))

    @routes.get("/jobs/{job_id}/result", summary="The job's output file (streamed)")
    async def job_result(request: Request, job_id: str,
                         grant: Grant = Depends(access("GET", "/jobs/{job_id}/result"))):
        job = await own_job(request, job_id, grant.group)
        if job.status != SUCCEEDED:
            raise Conflict(f"job {job_id} is {job.status}", status=job.status, error=job.error)
        return StreamingResponse(
            gateway_of(request).files.chunks(job.output_key),
            media_type="application/octet-stream",
            headers={"Content-Disposition": attachment(job.output_name or "result")})

    return routes


MAX_NAME_BYTES = 255  # what file systems and object stores take as one path segment


def upload_name(filename: str) -> str:
    """The upload's own file name (folders dropped), or a 400 saying what is wrong."""
    name = PurePosixPath((filename or "input").replace("\\", "/")).name or "input"
    if name in (".", ".."):
        raise BadRequest(f"the uploaded file's name {filename!r} is not a file name; name it "
                         "like data.csv", field="file")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise BadRequest(f"the uploaded file's name is {len(name.encode())} bytes long; at most "
                         f"{MAX_NAME_BYTES}", field="file")
    if any(ord(c) < 32 for c in name):
        raise BadRequest("the uploaded file's name holds control characters", field="file")
    return name


def attachment(name: str) -> str:
    """``Content-Disposition`` for any file name: an ASCII ``filename`` for old clients and
    the exact name as RFC 5987 ``filename*`` (HTTP headers cannot carry it raw)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


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

    try:
        reference = ModelReference.parse(model, settings.alias)
    except ModelReferenceError as exc:
        raise BadRequest(str(exc), field="model") from exc
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        version = (client.get_model_version(reference.name, reference.version) if reference.version
                   else client.get_model_version_by_alias(reference.name, reference.alias))
        root = client.get_model_version_download_uri(reference.name, version.version).rstrip("/")
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
