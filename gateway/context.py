"""The objects the routes share, built once per app (``app.state.gateway``).

Routes reach them through ``gateway_of(request)`` -- a plain attribute read, not
a FastAPI dependency: on the open predict routes dependency solving was ~20 %
of the gateway's own time per call (py-spy), so those routes take none.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional

from fastapi import Request

from .settings import GatewaySettings

if TYPE_CHECKING:
    from .coalescing import Coalescer
    from .directory import ModelDirectory
    from .files import JobFiles
    from .jobs import JobWorker
    from .registry import RegistryReader
    from .store import Store
    from .upstream import V2Upstream


@dataclass
class Gateway:
    settings: GatewaySettings
    upstream: "V2Upstream"
    tables: Any                   # GrpcUpstream, or the REST upstream: ``infer_table``
    registry: "RegistryReader"
    directory: "ModelDirectory"
    coalescer: "Coalescer"
    store: "Store"
    files: "JobFiles"
    worker: Optional["JobWorker"] = None
    follower: Any = None          # follower.AliasFollower, started with the app
    shadowing: Any = None         # splitting.Shadowing: shadow copies and their statistics
    monitoring: Any = None        # monitoring.Monitoring: metrics, prediction log, drift
    # OpenAPI examples per (model, version), filled on the first /openapi.json.
    examples: Optional[Dict[Any, Any]] = None
    # One switch of what is served at a time per model (deploy, rollback, alias following).
    switching: Dict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway
