"""What is known about a served model: provenance and its registered input example."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Dict, Optional

from fastapi import APIRouter, Request

from ..auth import predict_guard
from ..context import gateway_of
from ..directory import ServedModel
from ..errors import NotFound, Unavailable
from ..registry import RegistryUnavailable
from ..settings import GatewaySettings
from .inference import MODEL_QUERY


def router(settings: GatewaySettings) -> APIRouter:
    routes = APIRouter(tags=["models"], dependencies=predict_guard(settings))

    @routes.get("/metadata", summary="Provenance of the served model")
    async def metadata(request: Request, model: Optional[str] = MODEL_QUERY) -> Any:
        gateway = gateway_of(request)
        served = await gateway.directory.resolve(model or settings.forward_model, not model)
        example = None
        with contextlib.suppress(RegistryUnavailable):
            example = await gateway.registry.input_example(served.name, served.version)
        # MLflow (and ONNX) are imported only here, in a thread: the predict path never pays.
        found = await asyncio.to_thread(_provenance, settings.tracking_uri, served)
        return {**found, "input_example": example}

    @routes.get("/models/{name}/shadow", summary="What the shadow version answered beside the "
                "served one: calls, agreement, probability deltas, latencies")
    async def shadow(request: Request, name: str) -> Any:
        stats = gateway_of(request).shadowing.stats.get(name)
        if stats is None:
            raise NotFound(f"model {name!r} has had no shadow calls through this gateway "
                           f"(mlplatform route {name} --shadow ALIAS)")
        return stats.report()

    return routes


def _provenance(tracking_uri: str, served: ServedModel) -> Dict[str, Any]:
    from mlplatform.pyfunc_models.provenance import ProvenanceError, model_provenance

    if served.version is None:
        raise Unavailable(f"the registry has no version for {served.name}")
    try:
        found = model_provenance(tracking_uri, served.name, version=served.version)
    except ProvenanceError as exc:
        raise Unavailable(str(exc)) from exc
    except Exception as exc:  # MLflow unreachable: its client raises requests' errors
        raise Unavailable(f"the model registry cannot be read ({type(exc).__name__})") from exc
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
        "onnx": found["onnx"],
    }
