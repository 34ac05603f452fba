"""What the gateway reads from the MLflow registry, over MLflow's REST API.

Why not ``MlflowClient``: importing MLflow costs the gateway ~150 MB of memory
and a second of start-up for four GET requests; and the blocking client needs a
thread per lookup.  These calls are plain async HTTP on a pooled session.

Read here: the version a serving target serves (the registered model's
``mlplatform.served.<target>`` tag, written by ``mlserver_configs.serving``),
its aliases, a version's wire-format tags, and its input example (for the
OpenAPI examples).  ``RegistryUnavailable`` when MLflow cannot be reached.
Where MLflow requires an account, the gateway's is MLflow's own client variables
(``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``, or ``MLFLOW_TRACKING_TOKEN``), the same
the ``MlflowClient`` calls of deploys read.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional
from urllib.parse import quote, urlencode

import orjson

from mlplatform.client.transport import AsyncV2Transport, ServerUnreachable
from mlplatform.pyfunc_models.profile import PROFILE_ARTIFACT
from mlplatform.pyfunc_models.conventions import (
    ACCEPTS_TABLE_TAG,
    INPUT_FORMAT_TAG,
    OUTPUT_FORMAT_TAG,
    PARAMS_TAG,
    RouteRule,
    route_tag,
    served_tag,
)

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
PROXIED = "mlflow-artifacts:/"
INPUT_EXAMPLE = "input_example.json"
# pyfunc artifacts sit under artifacts/ in the model folder (pyfunc_models.profile)
PROFILE = "artifacts/" + PROFILE_ARTIFACT


class RegistryUnavailable(RuntimeError):
    """MLflow did not answer (or answered an error other than 'no such thing')."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    served: Optional[str]                       # the version the target serves, if recorded
    aliases: Dict[str, str] = field(default_factory=dict)
    route: Optional[RouteRule] = None          # canary or shadow beside the served version


@dataclass(frozen=True)
class VersionFormats:
    input_format: str = "json"
    output_format: str = "json"
    accepts_table: bool = False
    run_id: str = ""
    params: tuple = ()  # the request parameters the version takes (X-Param-* headers)


def credentials() -> Dict[str, str]:
    """The Authorization header MLflow's own client would send, from its variables."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get(
        "MLFLOW_TRACKING_PASSWORD")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


class RegistryReader:
    def __init__(self, tracking_uri: str, target: str, timeout: float = 5.0):
        # The same pooled async HTTP as the V2 upstream; only the paths differ.
        self.http = AsyncV2Transport(tracking_uri, timeout=timeout, connections=8,
                                     headers=credentials())
        self.tag = served_tag(target)
        self.route_tag = route_tag(target)

    async def close(self) -> None:
        await self.http.close()

    async def model(self, name: str) -> Optional[RegisteredModel]:
        """The registered model's served version and aliases; None if it is not registered."""
        body = await self._get(f"{API}/registered-models/get", name=name)
        if body is None:
            return None
        found = body.get("registered_model") or {}
        tags = {t.get("key"): t.get("value") for t in found.get("tags") or []}
        aliases = {a.get("alias"): str(a.get("version")) for a in found.get("aliases") or []}
        return RegisteredModel(name, tags.get(self.tag), aliases,
                               RouteRule.from_json(tags.get(self.route_tag)))

    async def formats(self, name: str, version: str) -> Optional[VersionFormats]:
        """How to talk to a version (its registration tags); None if there is no such version."""
        body = await self._get(f"{API}/model-versions/get", name=name, version=version)
        if body is None:
            return None
        found = body.get("model_version") or {}
        tags = {t.get("key"): t.get("value") for t in found.get("tags") or []}
        return VersionFormats(tags.get(INPUT_FORMAT_TAG, "json"),
                              tags.get(OUTPUT_FORMAT_TAG, "json"),
                              tags.get(ACCEPTS_TABLE_TAG) == "true", found.get("run_id") or "",
                              tuple(p for p in (tags.get(PARAMS_TAG) or "").split(",") if p))

    async def input_example(self, name: str, version: str) -> Any:
        """The version's registered input example (``input_example.json``), or None."""
        return _example_value(await self._model_file(name, version, INPUT_EXAMPLE))

    async def reference_profile(self, name: str, version: str) -> Any:
        """The profile of the version's training inputs (drift reference), or None."""
        return await self._model_file(name, version, PROFILE)

    async def _model_file(self, name: str, version: str, path: str) -> Any:
        """A JSON file inside the version's model folder, or None."""
        body = await self._get(f"{API}/model-versions/get-download-uri", name=name,
                               version=version)
        root = (body or {}).get("artifact_uri", "")
        if not root.startswith(PROXIED):  # only artifacts served through MLflow are read here
            return None
        url = ARTIFACTS + quote(root[len(PROXIED):].strip("/") + "/" + path)
        try:
            status, content = await self.http.send("GET", url)
        except ServerUnreachable as exc:
            raise RegistryUnavailable(str(exc)) from exc
        if status != 200:
            return None
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            return None

    async def _get(self, path: str, **query: str) -> Optional[Dict[str, Any]]:
        try:
            status, content = await self.http.send("GET", f"{path}?{urlencode(query)}")
        except ServerUnreachable as exc:
            raise RegistryUnavailable(str(exc)) from exc
        if status == 404 or (status == 400 and b"RESOURCE_DOES_NOT_EXIST" in content):
            return None
        if status != 200:
            raise RegistryUnavailable(f"MLflow answered {status} for {path}")
        return orjson.loads(content)


def _example_value(saved: Any) -> Any:
    """MLflow saves a dict example as-is, and other values under ``inputs``."""
    if saved is None:
        return None
    if isinstance(saved, dict) and set(saved) == {"inputs"}:
        return saved["inputs"]
    return saved
