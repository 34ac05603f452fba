"""Talk to a V2 (Open Inference Protocol) server that serves mlplatform models.

The three functions are the platform guide's (seed 001), kept with their names
and arguments so the guide's notebooks work unchanged; ``MLServerClient`` is a
small typed client on top.  Only ``requests`` is needed: no MLServer import, so
this works from any notebook and against any V2 server (MLServer, KServe, Triton).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import requests
from requests import Response

from mlplatform.pyfunc_models.wire import (
    WireFormatError,
    decode_base64_response,
    decode_json_response,
    image_request,
    json_request,
)

from .transport import (
    DEFAULT_TIMEOUT,
    InferenceServerError,
    ServerUnreachable,
    V2Paths,
    V2Transport,
    error_message,
    unreachable_reason,
)

__all__ = ["InferenceServerError", "MLServerClient", "ServerUnreachable",
           "create_request_to_mlserver_model", "decode_answer", "send_request_to_mlserver_model"]


def create_request_to_mlserver_model(data: Any, model_name: str) -> Dict[str, Any]:
    """The V2 request body carrying ``data`` as one JSON string (the guide's format)."""
    return json_request(data, model_name)


def send_request_to_mlserver_model(
    inference_request: Dict[str, Any],
    host: str,
    model_name: str,
    *,
    timeout: Union[float, tuple] = DEFAULT_TIMEOUT,
    session: Optional[requests.Session] = None,
) -> Response:
    """POST the request to ``<host>/v2/models/<model_name>/infer`` and return the response.

    Like the guide, this returns the response whatever its status;
    ``decode_answer`` raises for a non-200 one.
    """
    endpoint = host.rstrip("/") + V2Paths.infer(model_name)
    post = (session or requests).post
    try:
        return post(endpoint, json=inference_request, timeout=timeout)
    except requests.RequestException as exc:
        raise ServerUnreachable(endpoint, unreachable_reason(exc)) from exc


def decode_answer(post_response: Response) -> Any:
    """The model's answer (a dict, or a list for a batch) from the server's response."""
    if post_response.status_code != 200:
        raise InferenceServerError(post_response.status_code,
                                   error_message(post_response.status_code, post_response.content),
                                   post_response.url)
    try:
        body = post_response.json()
    except ValueError as exc:
        raise WireFormatError(f"{post_response.url} did not answer with JSON") from exc
    return decode_json_response(body)


class MLServerClient:
    """A typed client for JSON models served over V2.

    >>> with MLServerClient("http://127.0.0.1:8000") as server:
    ...     server.predict("echo", {"a": 10})
    {'result': 20}
    """

    def __init__(self, host: str, *, timeout: Union[float, tuple] = DEFAULT_TIMEOUT):
        self.host = host.rstrip("/")
        self.transport = V2Transport(self.host, timeout=timeout)

    def __enter__(self) -> "MLServerClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def predict(self, model: str, data: Any, *, version: Optional[str] = None) -> Any:
        """Send one document to ``model`` and return its JSON answer.

        ``data`` is anything JSON-serialisable, or ``bytes`` (an image) for image
        models, which are sent base64-encoded with the ``base64`` content type.
        """
        return decode_json_response(self.infer(model, self._request(model, data), version=version))

    def predict_image(self, model: str, image: bytes, *, version: Optional[str] = None) -> str:
        """Send an image to an image -> image model; the answer image as base64 text."""
        return decode_base64_response(
            self.infer(model, image_request(image, model), version=version))

    @staticmethod
    def _request(model: str, data: Any) -> Dict[str, Any]:
        if isinstance(data, (bytes, bytearray)):
            return image_request(bytes(data), model)
        return create_request_to_mlserver_model(data, model)

    def infer(self, model: str, request: Dict[str, Any], *,
              version: Optional[str] = None) -> Dict[str, Any]:
        """Send a raw V2 request body and return the raw V2 response body."""
        return self.transport.infer(model, request, version)

    def is_ready(self, model: Optional[str] = None, *, version: Optional[str] = None) -> bool:
        """Whether the server (or one of its models) is ready to answer."""
        return self.transport.is_ready(model, version)

    def models(self) -> List[Dict[str, Any]]:
        """The server's model repository: name, version and state of each model."""
        return self.transport.index()
