"""A typed client for the mlplatform gateway, sync (``GatewayClient``) and async
(``AsyncGatewayClient``) with the same methods.

Errors are typed by the gateway's contract, each carrying the status, the
message and the detail (or the model's reason):

    GatewayError
      BadRequest (400)   Unauthorized (401)   ModelFailed (403)   Forbidden (403, the
      token lacks the route's scope)   NotFound (404)   Conflict (409)
      PayloadTooLarge (413)   ModelServerRefused (502)   ServiceUnavailable (503)
      GatewayUnreachable (no answer at all: refused, DNS, timeout)

Both twins build every request in one shared base (``_Requests``, as httpx's
``Client`` / ``AsyncClient`` share ``BaseClient``); they differ only in sending.

Large uploads stream from disk with a progress bar (tqdm) when ``progress=True``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Union

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
FileLike = Union[str, os.PathLike, bytes, BinaryIO]


class GatewayError(RuntimeError):
    """Any error answer of the gateway: ``status_code``, ``message``, ``detail``, ``body``."""

    def __init__(self, status_code: int, body: Dict[str, Any], url: str):
        self.status_code = status_code
        self.body = body
        self.message = str(body.get("message", ""))
        self.detail = str(body.get("reason") or body.get("detail") or "")
        self.url = url
        super().__init__(f"{url} answered {status_code} {self.message}: {self.detail}")


class BadRequest(GatewayError):
    pass


class Unauthorized(GatewayError):
    pass


class ModelFailed(GatewayError):
    pass


class Forbidden(GatewayError):
    """403 ``forbidden``: the token lacks the route's scope (``scope`` names it)."""

    @property
    def scope(self) -> str:
        return str(self.body.get("scope", ""))


class PayloadTooLarge(GatewayError):
    pass


class NotFound(GatewayError):
    pass


class Conflict(GatewayError):
    pass


class ServiceUnavailable(GatewayError):
    pass


class ModelServerRefused(GatewayError):
    """502: the model server could not load a version (deploy, rollback); nothing changed."""


class GatewayUnreachable(GatewayError):
    """No answer from the gateway at all (refused, DNS, timeout); ``status_code`` is 0."""

    def __init__(self, url: str, reason: str):
        super().__init__(0, {"message": "unreachable", "detail": reason}, url)


ERRORS = {400: BadRequest, 401: Unauthorized, 403: ModelFailed, 404: NotFound, 409: Conflict,
          413: PayloadTooLarge, 502: ModelServerRefused, 503: ServiceUnavailable}
FINISHED = ("Succeeded", "Failed")


def _unreachable(exc: httpx.HTTPError, base_url: str) -> GatewayUnreachable:
    try:
        url = str(exc.request.url)
    except RuntimeError:  # httpx raises when the error carries no request
        url = base_url
    reason = "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    return GatewayUnreachable(url, reason)


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.reason_phrase, "detail": response.text[:500]}
    if not isinstance(body, dict):
        body = {"message": str(body)}
    kind = ERRORS.get(response.status_code, GatewayError)
    if response.status_code == 403 and body.get("message") == "forbidden":
        kind = Forbidden  # the seed's 403 is the model's failure; this one is the token's
    raise kind(response.status_code, body, str(response.request.url))


def _file(upload: FileLike, name: Optional[str]):
    """(filename, content) for httpx: bytes as they are, paths opened for streaming."""
    if isinstance(upload, bytes):
        return name or "upload", upload
    if isinstance(upload, (str, os.PathLike)):
        path = Path(upload)
        handle = path.open("rb")
        handle._opened_by_client = True  # closed after the request by _close_opened
        return name or path.name, handle
    return name or getattr(upload, "name", "upload"), upload


class _Progress:
    """Wraps a file so reading it advances a tqdm bar (only for files on disk)."""

    def __init__(self, handle: BinaryIO, total: int, label: str):
        from tqdm import tqdm

        self.handle, self.bar = handle, tqdm(total=total, unit="B", unit_scale=True, desc=label)

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.bar.update(len(chunk))
        if not chunk:
            self.bar.close()
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk


def _upload(upload: FileLike, name: Optional[str], progress: bool):
    filename, content = _file(upload, name)
    if progress and hasattr(content, "fileno"):
        content = _Progress(content, os.fstat(content.fileno()).st_size, filename)
    return {"file": (filename, content)}


def _params(model: Optional[str], **extra: Any) -> Dict[str, Any]:
    values = {"model": model, **extra}
    return {k: v for k, v in values.items() if v is not None}


def _close_opened(request: Dict[str, Any]) -> None:
    """Close the files ``_file`` opened from paths (the caller's own file objects stay open)."""
    for _, content in (request.get("files") or {}).values():
        handle = getattr(content, "handle", content)
        if getattr(handle, "_opened_by_client", False):
            handle.close()


class _Requests:
    """Everything but sending: the request each method makes, shared by both twins."""

    def __init__(self, base_url: str, token: Optional[str], timeout: httpx.Timeout):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    def _forward(data: Any = None, image: Optional[FileLike] = None, model: Optional[str] = None,
                 parameters: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        headers = {f"X-Param-{k}": str(v) for k, v in (parameters or {}).items()}
        if image is not None:
            return dict(method="POST", url="/forward", params=_params(model),
                        files={"image": _file(image, None)}, headers=headers)
        return dict(method="POST", url="/forward", params=_params(model), json=data,
                    headers=headers)

    @staticmethod
    def _batch(route: str, data: Any = None, file: Optional[FileLike] = None,
               model: Optional[str] = None, label: Optional[str] = None,
               filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        params = _params(model, label=label)
        if file is not None:
            return dict(method="POST", url=route, params=params,
                        files=_upload(file, filename, progress))
        return dict(method="POST", url=route, params=params, json=data)

    @staticmethod
    def _job(file: FileLike, model: str, target: str, filename: Optional[str],
             progress: bool) -> Dict[str, Any]:
        return dict(method="POST", url="/jobs", files=_upload(file, filename, progress),
                    data={"model": model, "target": target})

    @staticmethod
    def _add_data(model: str, file: FileLike, filename: Optional[str],
                  progress: bool) -> Dict[str, Any]:
        return dict(method="PUT", url="/add_data", params={"model": model},
                    files=_upload(file, filename, progress))

    @staticmethod
    def _put(url: str, **params: Any) -> Dict[str, Any]:
        return dict(method="PUT", url=url, params=params)

    @staticmethod
    def _post_params(url: str, **params: Any) -> Dict[str, Any]:
        return dict(method="POST", url=url, params={k: v for k, v in params.items()
                                                    if v is not None})

    @staticmethod
    def _get(url: str, **params: Any) -> Dict[str, Any]:
        return dict(method="GET", url=url, params={k: v for k, v in params.items() if v is not None})

    @staticmethod
    def _post(url: str, body: Any) -> Dict[str, Any]:
        return dict(method="POST", url=url, json=body)

    @staticmethod
    def _finished(status: Dict[str, Any], what: str, started: float, timeout: float) -> bool:
        import time

        if status["status"] in FINISHED:
            return True
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} is still {status['status']} after {timeout}s")
        return False


def _result_path(destination: Union[str, os.PathLike], response: httpx.Response) -> Path:
    """A folder gets the server's file name (RFC 6266: ``filename*`` before ``filename``)."""
    path = Path(destination)
    if path.is_dir():
        name = disposition_filename(response.headers.get("content-disposition", ""))
        path = path / (Path(name).name or "result")
    return path


def disposition_filename(header: str) -> str:
    """The file name in a ``Content-Disposition`` header: the RFC 5987 ``filename*`` (any
    language) when present, else the plain ``filename``."""
    import re
    from urllib.parse import unquote

    extended = re.search(r"filename\*\s*=\s*([A-Za-z0-9_-]*)'[^']*'([^;\s]+)", header)
    if extended:
        return unquote(extended.group(2), encoding=extended.group(1) or "utf-8", errors="replace")
    plain = re.search(r'filename\s*=\s*(?:"([^"]*)"|([^;\s]+))', header)
    return (plain.group(1) or plain.group(2)) if plain else ""


class GatewayClient(_Requests):
    """>>> GatewayClient("http://127.0.0.1:8080").forward({"a": 10})
    {'result': 20}"""

    def __init__(self, base_url: str, *, token: Optional[str] = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT):
        super().__init__(base_url, token, timeout)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=self.headers)

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, request: Dict[str, Any]) -> httpx.Response:
        try:
            response = self._http.request(**request)
        except httpx.TransportError as exc:
            raise _unreachable(exc, self.base_url) from exc
        finally:
            _close_opened(request)
        _raise_for(response)
        return response

    def forward(self, data: Any = None, *, image: Optional[FileLike] = None,
                model: Optional[str] = None, parameters: Optional[Dict[str, str]] = None) -> Any:
        """JSON in, the model's JSON answer out; or an image in (``{"image": base64}`` back
        for image models)."""
        return self._send(self._forward(data, image, model, parameters)).json()

    def forward_batch(self, data: Any = None, *, file: Optional[FileLike] = None,
                      model: Optional[str] = None, filename: Optional[str] = None,
                      progress: bool = False) -> Dict[str, Any]:
        """A JSON list, or a .csv / .json / .zip file (path, bytes or open file)."""
        return self._send(self._batch("/forward_batch", data, file, model, None, filename,
                                      progress)).json()

    def evaluate(self, data: Any = None, *, file: Optional[FileLike] = None,
                 model: Optional[str] = None, label: Optional[str] = None,
                 filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        return self._send(self._batch("/evaluate", data, file, model, label, filename,
                                      progress)).json()

    def metadata(self, model: Optional[str] = None) -> Dict[str, Any]:
        return self._send(self._get("/metadata", model=model)).json()

    def models(self) -> List[Dict[str, Any]]:
        return self._send(self._get("/models")).json()

    def predict(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return self._send(self._post("/predict", transaction)).json()

    def predict_scenario(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return self._send(self._post("/predict_scenario", transaction)).json()

    def is_ready(self) -> bool:
        """Whether the gateway, MLServer and the routes' models are ready (``/ready``)."""
        try:
            return self._http.get("/ready").status_code == 200
        except httpx.TransportError:
            return False

    def submit_job(self, file: FileLike, model: str, target: str, *,
                   filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        """Start a job on an imported model's file target; returns at once with its id."""
        return self._send(self._job(file, model, target, filename, progress)).json()

    def job_status(self, job_id: str) -> Dict[str, Any]:
        return self._send(self._get(f"/jobs/{job_id}")).json()

    def wait_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> Dict[str, Any]:
        """Poll until the job is Succeeded or Failed (``TimeoutError`` after ``timeout``)."""
        import time

        started = time.monotonic()
        while True:
            status = self.job_status(job_id)
            if self._finished(status, f"job {job_id}", started, timeout):
                return status
            time.sleep(poll)

    def job_result(self, job_id: str, destination: Union[str, os.PathLike]) -> Path:
        """Stream the job's output file to ``destination`` (a folder or a file path)."""
        try:
            with self._http.stream("GET", f"/jobs/{job_id}/result") as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                target = _result_path(destination, response)
                with open(target, "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise _unreachable(exc, self.base_url) from exc
        return target

    # ------------------------------------------------------------ a model's life

    def add_data(self, model: str, file: FileLike, *, filename: Optional[str] = None,
                 progress: bool = False) -> Dict[str, Any]:
        """Append labelled rows (a CSV with the label column) to ``model``'s training data."""
        return self._send(self._add_data(model, file, filename, progress)).json()

    def retrain(self, model: str) -> Dict[str, Any]:
        """Start the training pipeline; returns at once with the training ``id``."""
        return self._send(self._put("/retrain", model=model)).json()

    def training(self, training_id: int) -> Dict[str, Any]:
        """Status, metrics, plots, and the champion's metrics on the same rows."""
        return self._send(self._get(f"/metrics/{training_id}")).json()

    def wait_training(self, training_id: int, timeout: float = 1800.0,
                      poll: float = 2.0) -> Dict[str, Any]:
        import time

        started = time.monotonic()
        while True:
            report = self.training(training_id)
            if self._finished(report, f"training {training_id}", started, timeout):
                return report
            time.sleep(poll)

    def deploy(self, training_id: int) -> Dict[str, Any]:
        """Serve the training's version as champion; returns once it answers."""
        return self._send(self._post_params(f"/deploy/{training_id}")).json()

    def rollback(self, model: str) -> Dict[str, Any]:
        """Serve the previous champion again."""
        return self._send(self._post_params("/rollback", model=model)).json()

    def versions(self, model: str) -> List[Dict[str, Any]]:
        return self._send(self._get(f"/models/{model}/versions")).json()


class AsyncGatewayClient(_Requests):
    """The async twin of ``GatewayClient``: the same methods, awaitable."""

    def __init__(self, base_url: str, *, token: Optional[str] = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT):
        super().__init__(base_url, token, timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       headers=self.headers)

    async def __aenter__(self) -> "AsyncGatewayClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: Dict[str, Any]) -> httpx.Response:
        try:
            response = await self._http.request(**request)
        except httpx.TransportError as exc:
            raise _unreachable(exc, self.base_url) from exc
        finally:
            _close_opened(request)
        _raise_for(response)
        return response

    async def forward(self, data: Any = None, *, image: Optional[FileLike] = None,
                      model: Optional[str] = None,
                      parameters: Optional[Dict[str, str]] = None) -> Any:
        return (await self._send(self._forward(data, image, model, parameters))).json()

    async def forward_batch(self, data: Any = None, *, file: Optional[FileLike] = None,
                            model: Optional[str] = None, filename: Optional[str] = None,
                            progress: bool = False) -> Dict[str, Any]:
        return (await self._send(self._batch("/forward_batch", data, file, model, None,
                                             filename, progress))).json()

    async def evaluate(self, data: Any = None, *, file: Optional[FileLike] = None,
                       model: Optional[str] = None, label: Optional[str] = None,
                       filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        return (await self._send(self._batch("/evaluate", data, file, model, label, filename,
                                             progress))).json()

    async def metadata(self, model: Optional[str] = None) -> Dict[str, Any]:
        return (await self._send(self._get("/metadata", model=model))).json()

    async def models(self) -> List[Dict[str, Any]]:
        return (await self._send(self._get("/models"))).json()

    async def predict(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return (await self._send(self._post("/predict", transaction))).json()

    async def predict_scenario(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return (await self._send(self._post("/predict_scenario", transaction))).json()

    async def is_ready(self) -> bool:
        try:
            return (await self._http.get("/ready")).status_code == 200
        except httpx.TransportError:
            return False

    async def submit_job(self, file: FileLike, model: str, target: str, *,
                         filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        return (await self._send(self._job(file, model, target, filename, progress))).json()

    async def job_status(self, job_id: str) -> Dict[str, Any]:
        return (await self._send(self._get(f"/jobs/{job_id}"))).json()

    async def wait_job(self, job_id: str, timeout: float = 600.0,
                       poll: float = 0.5) -> Dict[str, Any]:
        import asyncio
        import time

        started = time.monotonic()
        while True:
            status = await self.job_status(job_id)
            if self._finished(status, f"job {job_id}", started, timeout):
                return status
            await asyncio.sleep(poll)

    async def job_result(self, job_id: str, destination: Union[str, os.PathLike]) -> Path:
        try:
            async with self._http.stream("GET", f"/jobs/{job_id}/result") as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                target = _result_path(destination, response)
                with open(target, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise _unreachable(exc, self.base_url) from exc
        return target

    # ------------------------------------------------------------ a model's life

    async def add_data(self, model: str, file: FileLike, *, filename: Optional[str] = None,
                       progress: bool = False) -> Dict[str, Any]:
        return (await self._send(self._add_data(model, file, filename, progress))).json()

    async def retrain(self, model: str) -> Dict[str, Any]:
        return (await self._send(self._put("/retrain", model=model))).json()

    async def training(self, training_id: int) -> Dict[str, Any]:
        return (await self._send(self._get(f"/metrics/{training_id}"))).json()

    async def wait_training(self, training_id: int, timeout: float = 1800.0,
                            poll: float = 2.0) -> Dict[str, Any]:
        import asyncio
        import time

        started = time.monotonic()
        while True:
            report = await self.training(training_id)
            if self._finished(report, f"training {training_id}", started, timeout):
                return report
            await asyncio.sleep(poll)

    async def deploy(self, training_id: int) -> Dict[str, Any]:
        return (await self._send(self._post_params(f"/deploy/{training_id}"))).json()

    async def rollback(self, model: str) -> Dict[str, Any]:
        return (await self._send(self._post_params("/rollback", model=model))).json()

    async def versions(self, model: str) -> List[Dict[str, Any]]:
        return (await self._send(self._get(f"/models/{model}/versions"))).json()
