"""One V2 (Open Inference Protocol) transport: paths, error mapping, sync and async twins.

Every caller of a V2 server goes through here: ``MLServerClient`` and the
guide's functions, the serving module's deploy (repository API), and the
gateway's upstream.  So a path is built in one place, a server's error text is
read in one place, and the same failure gives the same typed error everywhere:

* ``ServerUnreachable``: no answer at all (refused, DNS, timeout);
* ``InferenceServerError``: an answer other than 200, with the server's message
  (MLServer's ``error``, FastAPI's ``detail`` list, or the body text).

``V2Transport`` (``requests``, pooled session) and ``AsyncV2Transport``
(``aiohttp``, pooled) share ``V2Paths`` and ``error_message``; only the sending
differs.  The async twin is aiohttp, not httpx: measured here, one call to
MLServer costs 2.0 ms through httpx and 1.0 ms through aiohttp, with MLServer
itself ~0.9 ms -- that millisecond is the gateway's whole budget
(docs/benchmarks.md).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import requests

DEFAULT_TIMEOUT = (5.0, 60.0)  # seconds to connect, seconds to wait for the answer
REQUEST_ID_HEADER = "X-Request-ID"


class InferenceServerError(RuntimeError):
    """The server answered, but not with 200.  Carries the server's own message."""

    def __init__(self, status_code: int, message: str, url: str):
        super().__init__(f"{url} answered HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.url = url


class ServerUnreachable(ConnectionError):
    """No answer from the server at all (refused, DNS, timeout)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class V2Paths:
    """The V2 endpoints (and MLServer's / Triton's repository extension)."""

    LIVE = "/v2/health/live"
    READY = "/v2/health/ready"
    INDEX = "/v2/repository/index"

    @staticmethod
    def model(name: str, version: Optional[str] = None) -> str:
        path = f"/v2/models/{name}"
        return f"{path}/versions/{version}" if version else path

    @classmethod
    def infer(cls, name: str, version: Optional[str] = None) -> str:
        return cls.model(name, version) + "/infer"

    @classmethod
    def ready(cls, name: Optional[str] = None, version: Optional[str] = None) -> str:
        return cls.model(name, version) + "/ready" if name else cls.READY

    @staticmethod
    def repository(name: str, action: str) -> str:
        """``load`` or ``unload`` through the repository API."""
        return f"/v2/repository/models/{name}/{action}"


def error_message(status_code: int, content: bytes) -> str:
    """The server's own reason: MLServer's ``error``, FastAPI's ``detail``, or the text."""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        if body.get("error"):
            return str(body["error"])
        detail = body.get("detail")
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
                for item in detail if isinstance(item, dict)) or str(detail)
        if detail:
            return str(detail)
    if body is not None:
        return str(body)
    return content.decode(errors="replace").strip()[:2000] or f"HTTP {status_code}"


def unreachable_reason(exc: BaseException) -> str:
    if isinstance(exc, (requests.Timeout, asyncio.TimeoutError)):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or host unknown"
    return type(exc).__name__


class _Base:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def url(self, path: str) -> str:
        return self.base_url + path

    def _check(self, status: int, content: bytes, path: str) -> bytes:
        if status != 200:
            raise InferenceServerError(status, error_message(status, content), self.url(path))
        return content


Timeout = Union[float, Tuple[float, float]]


class V2Transport(_Base):
    """Synchronous V2 calls over a pooled ``requests`` session."""

    def __init__(self, base_url: str, *, timeout: Timeout = DEFAULT_TIMEOUT,
                 session: Optional[requests.Session] = None):
        super().__init__(base_url)
        self.timeout = timeout
        self.session = session or requests.Session()

    def close(self) -> None:
        self.session.close()

    def send(self, method: str, path: str, *, json_body: Any = None, timeout: Timeout = None,
             headers: Optional[Mapping[str, str]] = None) -> requests.Response:
        """The raw response, whatever its status; ``ServerUnreachable`` without one."""
        url = self.url(path)
        try:
            return self.session.request(method, url, json=json_body, headers=headers,
                                        timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise ServerUnreachable(url, unreachable_reason(exc)) from exc

    def call(self, method: str, path: str, json_body: Any = None, *, timeout: Timeout = None,
             headers: Optional[Mapping[str, str]] = None) -> Any:
        """The JSON answer of a 200; ``InferenceServerError`` otherwise."""
        response = self.send(method, path, json_body=json_body, timeout=timeout, headers=headers)
        content = self._check(response.status_code, response.content, path)
        return json.loads(content) if content else None

    def infer(self, name: str, body: Dict[str, Any], version: Optional[str] = None,
              headers: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        return self.call("POST", V2Paths.infer(name, version), body, headers=headers)

    def is_ready(self, name: Optional[str] = None, version: Optional[str] = None,
                 timeout: Timeout = None) -> bool:
        try:
            return self.send("GET", V2Paths.ready(name, version),
                             timeout=timeout).status_code == 200
        except ServerUnreachable:
            return False

    def index(self) -> List[Dict[str, Any]]:
        return self.call("POST", V2Paths.INDEX, {})

    def load(self, name: str, timeout: Timeout = 600.0) -> None:
        self.call("POST", V2Paths.repository(name, "load"), timeout=timeout)

    def unload(self, name: str, timeout: Timeout = 120.0) -> None:
        self.call("POST", V2Paths.repository(name, "unload"), timeout=timeout)


class AsyncV2Transport(_Base):
    """The async twin over one pooled ``aiohttp`` session (created inside the event loop)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, connections: int = 64,
                 headers: Optional[Mapping[str, str]] = None):
        super().__init__(base_url)
        self.timeout_seconds = timeout
        self.connections = connections
        self.headers = dict(headers or {})  # sent with every request (an Authorization)
        self._session = None

    @property
    def session(self):
        if self._session is None or self._session.closed:
            import aiohttp
            import orjson

            self._session = aiohttp.ClientSession(
                base_url=self.base_url,
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds,
                                              connect=min(5.0, self.timeout_seconds)),
                connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30),
                headers=self.headers,
                json_serialize=lambda value: orjson.dumps(value).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, method: str, path: str, *, content: bytes = None, json_body: Any = None,
                   headers: Optional[Mapping[str, str]] = None,
                   timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """(status, body), whatever the status; ``ServerUnreachable`` without an answer."""
        import aiohttp

        extra = {} if timeout is None else {"timeout": aiohttp.ClientTimeout(total=timeout)}
        try:
            async with self.session.request(method, path, data=content, json=json_body,
                                            headers=headers, **extra) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as exc:
            raise ServerUnreachable(self.url(path), "timed out") from exc
        except aiohttp.ClientError as exc:
            raise ServerUnreachable(self.url(path), type(exc).__name__) from exc

    async def call(self, method: str, path: str, *, content: bytes = None, json_body: Any = None,
                   headers: Optional[Mapping[str, str]] = None,
                   timeout: Optional[float] = None) -> Any:
        import orjson

        status, body = await self.send(method, path, content=content, json_body=json_body,
                                       headers=headers, timeout=timeout)
        return orjson.loads(self._check(status, body, path) or b"null")

    async def is_ready(self, name: Optional[str] = None, version: Optional[str] = None,
                       timeout: Optional[float] = None) -> bool:
        try:
            status, _ = await self.send("GET", V2Paths.ready(name, version), timeout=timeout)
        except ServerUnreachable:
            return False
        return status == 200

    async def index(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        return await self.call("POST", V2Paths.INDEX, json_body={}, timeout=timeout)
