"""A typed client for the mlplatform gateway, sync (``GatewayClient``) and async
(``AsyncGatewayClient``) with the same methods.

Errors are typed by the gateway's contract, each carrying the status, the
message and the detail (or the model's reason):

    GatewayError
      BadRequest (400)   Unauthorized (401)   ModelFailed (403)
      PayloadTooLarge (413)   ServiceUnavailable (503)

Large uploads stream from disk with a progress bar (tqdm) when ``progress=True``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, Optional, Union

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


class PayloadTooLarge(GatewayError):
    pass


class ServiceUnavailable(GatewayError):
    pass


ERRORS = {400: BadRequest, 401: Unauthorized, 403: ModelFailed, 413: PayloadTooLarge,
          503: ServiceUnavailable}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.reason_phrase, "detail": response.text[:500]}
    if not isinstance(body, dict):
        body = {"message": str(body)}
    raise ERRORS.get(response.status_code, GatewayError)(response.status_code, body,
                                                         str(response.request.url))


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


class _Routes:
    """The request each method makes; the sync and async twins only send them."""

    @staticmethod
    def forward(data: Any = None, image: Optional[FileLike] = None, model: Optional[str] = None,
                parameters: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        if image is not None:
            headers = {f"X-Param-{k}": str(v) for k, v in (parameters or {}).items()}
            return dict(method="POST", url="/forward", params=_params(model),
                        files={"image": _file(image, None)}, headers=headers)
        return dict(method="POST", url="/forward", params=_params(model), json=data)

    @staticmethod
    def batch(route: str, data: Any = None, file: Optional[FileLike] = None,
              model: Optional[str] = None, label: Optional[str] = None,
              filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        params = _params(model, label=label)
        if file is not None:
            return dict(method="POST", url=route, params=params,
                        files=_upload(file, filename, progress))
        return dict(method="POST", url=route, params=params, json=data)

    @staticmethod
    def job(file: FileLike, model: str, target: str, filename: Optional[str],
            progress: bool) -> Dict[str, Any]:
        return dict(method="POST", url="/jobs", files=_upload(file, filename, progress),
                    data={"model": model, "target": target})


class GatewayClient:
    """>>> GatewayClient("http://127.0.0.1:8080").forward({"a": 10})
    {'result': 20}"""

    def __init__(self, base_url: str, *, token: Optional[str] = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, request: Dict[str, Any]) -> httpx.Response:
        try:
            response = self._http.request(**request)
        finally:
            _close_opened(request)
        _raise_for(response)
        return response

    def forward(self, data: Any = None, *, image: Optional[FileLike] = None,
                model: Optional[str] = None, parameters: Optional[Dict[str, str]] = None) -> Any:
        """JSON in, the model's JSON answer out; or an image in (``{"image": base64}`` back
        for image models)."""
        return self._send(_Routes.forward(data, image, model, parameters)).json()

    def forward_batch(self, data: Any = None, *, file: Optional[FileLike] = None,
                      model: Optional[str] = None, filename: Optional[str] = None,
                      progress: bool = False) -> Dict[str, Any]:
        """A JSON list, or a .csv / .json / .zip file (path, bytes or open file)."""
        return self._send(_Routes.batch("/forward_batch", data, file, model, None, filename,
                                        progress)).json()

    def evaluate(self, data: Any = None, *, file: Optional[FileLike] = None,
                 model: Optional[str] = None, label: Optional[str] = None,
                 filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        return self._send(_Routes.batch("/evaluate", data, file, model, label, filename,
                                        progress)).json()

    def metadata(self, model: Optional[str] = None) -> Dict[str, Any]:
        return self._send(dict(method="GET", url="/metadata", params=_params(model))).json()

    def predict(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return self._send(dict(method="POST", url="/predict", json=transaction)).json()

    def predict_scenario(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return self._send(dict(method="POST", url="/predict_scenario", json=transaction)).json()

    def ready(self) -> bool:
        return self._http.get("/ready").status_code == 200

    def submit_job(self, file: FileLike, model: str, target: str, *,
                   filename: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
        """Start a job on an imported model's file target; returns at once with its id."""
        return self._send(_Routes.job(file, model, target, filename, progress)).json()

    def job_status(self, job_id: str) -> Dict[str, Any]:
        return self._send(dict(method="GET", url=f"/jobs/{job_id}")).json()

    def wait_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> Dict[str, Any]:
        """Poll until the job is Succeeded or Failed (``TimeoutError`` after ``timeout``)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            status = self.job_status(job_id)
            if status["status"] in FINISHED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {status['status']} after {timeout}s")
            time.sleep(poll)

    def job_result(self, job_id: str, destination: Union[str, os.PathLike]) -> Path:
        """Stream the job's output file to ``destination`` (a folder or a file path)."""
        with self._http.stream("GET", f"/jobs/{job_id}/result") as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            target = _result_path(destination, response)
            with open(target, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return target


FINISHED = ("Succeeded", "Failed")


def _result_path(destination: Union[str, os.PathLike], response: httpx.Response) -> Path:
    path = Path(destination)
    if path.is_dir():
        disposition = response.headers.get("content-disposition", "")
        name = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else ""
        path = path / (Path(name).name or "result")
    return path


class AsyncGatewayClient:
    """The async twin of ``GatewayClient`` (same methods, awaitable)."""

    def __init__(self, base_url: str, *, token: Optional[str] = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                       headers=headers)

    async def __aenter__(self) -> "AsyncGatewayClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: Dict[str, Any]) -> httpx.Response:
        try:
            response = await self._http.request(**request)
        finally:
            _close_opened(request)
        _raise_for(response)
        return response

    async def forward(self, data: Any = None, *, image: Optional[FileLike] = None,
                      model: Optional[str] = None,
                      parameters: Optional[Dict[str, str]] = None) -> Any:
        return (await self._send(_Routes.forward(data, image, model, parameters))).json()

    async def forward_batch(self, data: Any = None, *, file: Optional[FileLike] = None,
                            model: Optional[str] = None,
                            filename: Optional[str] = None) -> Dict[str, Any]:
        return (await self._send(_Routes.batch("/forward_batch", data, file, model, None,
                                               filename))).json()

    async def evaluate(self, data: Any = None, *, file: Optional[FileLike] = None,
                       model: Optional[str] = None, label: Optional[str] = None,
                       filename: Optional[str] = None) -> Dict[str, Any]:
        return (await self._send(_Routes.batch("/evaluate", data, file, model, label,
                                               filename))).json()

    async def metadata(self, model: Optional[str] = None) -> Dict[str, Any]:
        return (await self._send(dict(method="GET", url="/metadata",
                                      params=_params(model)))).json()

    async def predict(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return (await self._send(dict(method="POST", url="/predict", json=transaction))).json()

    async def predict_scenario(self, transaction: Dict[str, Any]) -> Dict[str, Any]:
        return (await self._send(dict(method="POST", url="/predict_scenario",
                                      json=transaction))).json()

    async def ready(self) -> bool:
        return (await self._http.get("/ready")).status_code == 200

    async def submit_job(self, file: FileLike, model: str, target: str, *,
                         filename: Optional[str] = None) -> Dict[str, Any]:
        return (await self._send(_Routes.job(file, model, target, filename, False))).json()

    async def job_status(self, job_id: str) -> Dict[str, Any]:
        return (await self._send(dict(method="GET", url=f"/jobs/{job_id}"))).json()

    async def job_result(self, job_id: str, destination: Union[str, os.PathLike]) -> Path:
        async with self._http.stream("GET", f"/jobs/{job_id}/result") as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            target = _result_path(destination, response)
            with open(target, "wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        return target
