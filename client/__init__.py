"""Python client for mlplatform models served over the V2 (Open Inference) protocol.

``MLServerClient`` and the guide's functions need only ``requests``; the gateway
clients (``mlplatform.client.gateway``) need ``httpx``.  Importing the package pulls in
neither MLServer nor MLflow.
"""
from mlplatform.pyfunc_models.wire import WireFormatError

from .gateway import AsyncGatewayClient, GatewayClient, GatewayError, GatewayUnreachable
from .mlserver import (
    InferenceServerError,
    MLServerClient,
    ServerUnreachable,
    create_request_to_mlserver_model,
    decode_answer,
    send_request_to_mlserver_model,
)

__all__ = [
    "AsyncGatewayClient",
    "GatewayClient",
    "GatewayError",
    "GatewayUnreachable",
    "InferenceServerError",
    "MLServerClient",
    "ServerUnreachable",
    "WireFormatError",
    "create_request_to_mlserver_model",
    "decode_answer",
    "send_request_to_mlserver_model",
]
