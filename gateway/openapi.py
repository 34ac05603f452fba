"""The OpenAPI document: request-body schemas per route, examples from the registry.

The routes declare what they accept (JSON, CSV, multipart) here; the examples
in ``/openapi.json`` are each route model's registered input example (the
``input_example.json`` that registration saves beside the model), read from
MLflow when the document is first asked for and cached per model version.  So
the docs show what the served model really takes, and the gateway imports no
model package to know it.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from fastapi import FastAPI

from . import contract
from .context import Gateway
from .errors import GatewayError
from .registry import RegistryUnavailable

# The routes whose examples come from their configured model (settings attribute).
ROUTE_MODELS = {"/forward": "forward_model", "/predict": "predict_model",
                "/predict_scenario": "scenario_model", "/forward_batch": "batch_model",
                "/evaluate": "batch_model"}
BATCH_ROUTES = ("/forward_batch", "/evaluate")
TRANSACTION = {"type": "object", "description": "One transaction: feature name -> value"}


def json_body(schema: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": schema or {}}}}}


def forward_body() -> Dict[str, Any]:
    spec = json_body()
    spec["requestBody"]["content"]["multipart/form-data"] = {"schema": {
        "type": "object", "properties": {"image": {"type": "string", "format": "binary"}},
        "required": ["image"]}}
    return spec


def batch_body(evaluate: bool = False) -> Dict[str, Any]:
    spec = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": {}}},
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {"file": {
                "type": "string", "format": "binary",
                "description": ".csv, .json or .zip of images"
                               + (" with a label column / labels" if evaluate else "")}}}}}}}
    return spec


def job_body() -> Dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file", "model", "target"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "model": {"type": "string", "example": "mmf_delivery"},
            "target": {"type": "string", "example": "Batch scoring"}}}}}}}


async def document(app: FastAPI, gateway: Gateway) -> Dict[str, Any]:
    """The OpenAPI document with each route's example filled in where one is known."""
    schema = contract.apply(copy.deepcopy(app.openapi()), not gateway.settings.public_predict)
    label = gateway.settings.label_column
    for path, setting in ROUTE_MODELS.items():
        operation = schema.get("paths", {}).get(path, {}).get("post")
        example = await _example(gateway, getattr(gateway.settings, setting))
        if operation is None or example is None:
            continue
        content = operation["requestBody"]["content"]
        if path not in BATCH_ROUTES:
            content["application/json"]["examples"] = {"registered": {"value": example}}
            continue
        rows = [example, example] if isinstance(example, dict) else [example]
        if path == "/evaluate" and isinstance(example, dict):
            rows = [{**row, label: 1} for row in rows]
        content["application/json"]["examples"] = {"registered": {"value": rows}}
        if all(isinstance(row, dict) for row in rows):
            content["text/csv"]["example"] = _csv(rows)
    return schema


async def _example(gateway: Gateway, reference: str) -> Optional[Any]:
    try:
        served = await gateway.directory.resolve(reference)
    except GatewayError:
        return None
    if served.version is None or served.input_format == "base64":
        return None
    key = (served.name, served.version)
    cache = gateway.examples if gateway.examples is not None else {}
    gateway.examples = cache
    if key not in cache:
        try:
            cache[key] = await gateway.registry.input_example(served.name, served.version)
        except RegistryUnavailable:
            return None
    return cache[key]


def _csv(rows: List[Dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(str(row.get(k, "")).lower() if isinstance(row.get(k), bool)
                              else str(row.get(k, "")) for k in header))
    return "\n".join(lines)
