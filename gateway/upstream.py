"""The gateway's V2 upstream: ``client.transport.AsyncV2Transport`` plus the gateway's
error contract.

No answer (refused, DNS, timeout) -> 503; the server answering 4xx/5xx for a
payload -> 403 with its reason (the model failed); 404 (model or version not
loaded) -> ``NotLoaded``, a 503 that the scoring layer may retry once on the
version that is served now.  Readiness probes have their own short timeout, so a
frozen model server cannot hold ``/ready`` for the whole inference timeout.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import orjson

from mlplatform.client.transport import (
    REQUEST_ID_HEADER,
    AsyncV2Transport,
    InferenceServerError,
    ServerUnreachable,
    V2Paths,
    error_message,
)
from mlplatform.pyfunc_models.table import TableColumn

from .errors import ModelFailed, NotLoaded, Unavailable
from .table import output_columns, table_request

READY_TIMEOUT = 2.0  # seconds: a readiness probe must answer fast, whatever the model does
INDEX_TIMEOUT = 5.0  # seconds for the repository index (a control-plane call, cheap when healthy)
_JSON = {"content-type": "application/json"}


class V2Upstream:
    def __init__(self, base_url: str, timeout: float, ready_timeout: float = READY_TIMEOUT):
        self.transport = AsyncV2Transport(base_url, timeout=timeout)
        self.base_url = self.transport.base_url
        self.ready_timeout = min(ready_timeout, timeout)

    async def close(self) -> None:
        await self.transport.close()

    async def infer(self, model: str, body: Dict[str, Any], version: Optional[str] = None,
                    request_id: Optional[str] = None) -> Dict[str, Any]:
        headers = {**_JSON, REQUEST_ID_HEADER: request_id} if request_id else _JSON
        try:
            status, content = await self.transport.send(
                "POST", V2Paths.infer(model, version), headers=headers,
                content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
        except ServerUnreachable as exc:
            raise unreachable(exc) from exc
        if status == 200:
            return orjson.loads(content)
        reason = error_message(status, content)
        if status == 404:
            raise not_loaded(model, version, reason)
        raise ModelFailed(reason, model=model, upstream_status=status)

    async def infer_table(self, model: str, columns: Sequence[TableColumn],
                          version: Optional[str] = None) -> Dict[str, Any]:
        """A table request as JSON; the answer's output columns by name."""
        return output_columns(await self.infer(model, table_request(columns), version))

    async def ready(self, model: Optional[str] = None, version: Optional[str] = None) -> bool:
        return await self.transport.is_ready(model, version, timeout=self.ready_timeout)

    async def index(self) -> List[Dict[str, Any]]:
        try:
            return await self.transport.index(timeout=min(INDEX_TIMEOUT,
                                                          self.transport.timeout_seconds))
        except ServerUnreachable as exc:
            raise unreachable(exc) from exc
        except InferenceServerError as exc:
            raise Unavailable(f"the model server's repository index answered "
                              f"{exc.status_code}: {exc.message}") from exc


def unreachable(exc: ServerUnreachable) -> Unavailable:
    server = exc.url.split("/v2/")[0]
    if exc.reason == "timed out":
        return Unavailable(f"{server} did not answer in time (timeout)")
    return Unavailable(f"{server} is unreachable ({exc.reason})")


def not_loaded(model: str, version: Optional[str], reason: str) -> NotLoaded:
    wanted = f"{model} version {version}" if version else model
    return NotLoaded(f"{wanted} is not loaded on the model server ({reason}); "
                     f"run `mlplatform deploy --model {model}{'/' + version if version else ''}`")


__all__ = ["V2Upstream", "not_loaded", "unreachable"]
