"""What the gateway knows about served models: names, the alias's version, wire formats.

Names come from the V2 server's repository index; versions and formats from
the MLflow registry (the version an alias points at, and the version's
``mlplatform.input_format`` / ``output_format`` tags).  Both are cached for a
few seconds.  Without the registry (MLflow down, or a plain V2 server), the
gateway calls the unversioned endpoint and assumes JSON.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .errors import BadRequest, Unavailable
from .upstream import V2Upstream

CACHE_SECONDS = 10.0
log = logging.getLogger("mlplatform.gateway")


@dataclass(frozen=True)
class ServedModel:
    name: str
    alias: Optional[str]
    version: Optional[str]
    input_format: str = "json"
    output_format: str = "json"
    run_id: str = ""
    accepts_table: bool = False


class ModelDirectory:
    def __init__(self, upstream: V2Upstream, tracking_uri: str, default_alias: str):
        self.upstream = upstream
        self.registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.default_alias = default_alias
        self._names: Tuple[float, List[str]] = (0.0, [])
        self._versions: Dict[Tuple[str, str], Tuple[float, ServedModel]] = {}

    async def served_names(self) -> List[str]:
        stamp, names = self._names
        if time.monotonic() - stamp > CACHE_SECONDS:
            index = await self.upstream.index()
            names = sorted({m["name"] for m in index if m.get("state") == "READY"})
            self._names = (time.monotonic(), names)
        return names

    async def resolve(self, reference: str) -> ServedModel:
        """``name`` or ``name@alias`` -> the served model; unknown names are a 400."""
        name, _, alias = reference.partition("@")
        alias = alias or self.default_alias
        names = await self.served_names()
        if name not in names:
            self._names = (0.0, [])  # maybe just deployed: look again next time
            raise BadRequest(f"unknown model {name!r}; served models: {', '.join(names) or 'none'}",
                             field="model")
        key = (name, alias)
        cached = self._versions.get(key)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        model = await asyncio.to_thread(self._from_registry, name, alias)
        self._versions[key] = (time.monotonic(), model)
        return model

    def _from_registry(self, name: str, alias: str) -> ServedModel:
        try:
            version = self.registry.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise Unavailable(f"{name}@{alias} is not in the registry") from exc
            log.warning("registry lookup of %s@%s failed: %s", name, alias, exc.message)
            return ServedModel(name, alias, None)
        except Exception as exc:  # registry unreachable: serve what MLServer has
            log.warning("registry lookup of %s@%s failed: %s", name, alias, exc)
            return ServedModel(name, alias, None)
        tags = version.tags or {}
        return ServedModel(name, alias, str(version.version),
                           tags.get("mlplatform.input_format", "json"),
                           tags.get("mlplatform.output_format", "json"), version.run_id or "",
                           tags.get("mlplatform.accepts_table") == "true")
