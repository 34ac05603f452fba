"""One pooled async HTTP client to the V2 server, with timeouts and the error mapping.

Connection refused, DNS failure or timeout -> 503; the server answering
4xx/5xx for a payload -> 403 with its reason (the model failed); 404 for a model
that is not loaded -> 503.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import httpx
import orjson

from .errors import ModelFailed, Unavailable


class V2Upstream:
    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def infer(self, model: str, body: Dict[str, Any],
                    version: Optional[str] = None) -> Dict[str, Any]:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        response = await self._send("POST", path, content=orjson.dumps(body),
                                    headers={"content-type": "application/json"})
        if response.status_code == 200:
            return orjson.loads(response.content)
        reason = _reason(response)
        if response.status_code == 404:
            wanted = f"{model} version {version}" if version else model
            raise Unavailable(f"{wanted} is not loaded on the model server ({reason}); "
                              "run `mlplatform deploy`")
        raise ModelFailed(reason, model=model, upstream_status=response.status_code)

    async def ready(self, model: Optional[str] = None) -> bool:
        path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
        try:
            return (await self.client.get(path)).status_code == 200
        except httpx.HTTPError:
            return False

    async def live(self) -> bool:
        try:
            return (await self.client.get("/v2/health/live")).status_code == 200
        except httpx.HTTPError:
            return False

    async def index(self) -> List[Dict[str, Any]]:
        response = await self._send("POST", "/v2/repository/index", json={})
        if response.status_code != 200:
            raise Unavailable(f"the model server's repository index answered {response.status_code}")
        return response.json()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{self.base_url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.base_url} is unreachable ({type(exc).__name__})") from exc


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        if body.get("error"):
            return str(body["error"])
        if body.get("detail"):
            return str(body["detail"])
    return str(body)
