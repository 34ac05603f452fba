"""One pooled async HTTP client to the V2 server, with timeouts and the error mapping.

Connection refused, DNS failure or timeout -> 503; the server answering
4xx/5xx for a payload -> 403 with its reason (the model failed); 404 for a model
that is not loaded -> 503.

The client is aiohttp, not httpx: measured here, one call to MLServer costs
2.0 ms through httpx and 1.0 ms through aiohttp, with MLServer itself ~0.9 ms;
that millisecond is the whole budget of the gateway (docs/benchmarks.md).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import aiohttp
import orjson

from mlplatform.pyfunc_models.table import TableColumn

from .errors import ModelFailed, Unavailable
from .table import output_columns, table_request


@dataclass
class Answer:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)


class V2Upstream:
    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(5.0, timeout))
        self._session: Optional[aiohttp.ClientSession] = None

    @property
    def client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop; pooled for the app's life.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self.base_url, timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                json_serialize=lambda value: orjson.dumps(value).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def infer(self, model: str, body: Dict[str, Any],
                    version: Optional[str] = None) -> Dict[str, Any]:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        response = await self._send("POST", path,
                                    content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                                    headers={"content-type": "application/json"})
        if response.status_code == 200:
            return orjson.loads(response.content)
        reason = _reason(response)
        if response.status_code == 404:
            raise not_loaded(model, version, reason)
        raise ModelFailed(reason, model=model, upstream_status=response.status_code)

    async def infer_table(self, model: str, columns: Sequence[TableColumn],
                          version: Optional[str] = None) -> Dict[str, Any]:
        """A table request as JSON; the answer's output columns by name."""
        return output_columns(await self.infer(model, table_request(columns), version))

    async def ready(self, model: Optional[str] = None) -> bool:
        path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
        try:
            return (await self._send("GET", path)).status_code == 200
        except Unavailable:
            return False

    async def index(self) -> List[Dict[str, Any]]:
        response = await self._send("POST", "/v2/repository/index", json={})
        if response.status_code != 200:
            raise Unavailable(f"the model server's repository index answered {response.status_code}")
        return response.json()

    async def _send(self, method: str, path: str, *, content: bytes = None,
                    json: Any = None, headers: Dict[str, str] = None) -> Answer:
        try:
            async with self.client.request(method, path, data=content, json=json,
                                           headers=headers) as response:
                return Answer(response.status, await response.read())
        except asyncio.TimeoutError as exc:
            raise Unavailable(f"{self.base_url} did not answer in time (timeout)") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(f"{self.base_url} is unreachable ({type(exc).__name__})") from exc


def not_loaded(model: str, version: Optional[str], reason: str) -> Unavailable:
    wanted = f"{model} version {version}" if version else model
    return Unavailable(f"{wanted} is not loaded on the model server ({reason}); "
                       "run `mlplatform deploy`")


def _reason(response: Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.content.decode(errors="replace").strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        if body.get("error"):
            return str(body["error"])
        if body.get("detail"):
            return str(body["detail"])
    return str(body)
