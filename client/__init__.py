"""Python client for mlplatform models served over the V2 (Open Inference) protocol.

Needs only ``requests``; importing it pulls in neither MLServer nor MLflow.
"""
from pyfunc_models.wire import WireFormatError

from .mlserver import (
    InferenceServerError,
    MLServerClient,
    ServerUnreachable,
    create_request_to_mlserver_model,
    decode_answer,
    send_request_to_mlserver_model,
)

__all__ = [
    "InferenceServerError",
    "MLServerClient",
    "ServerUnreachable",
    "WireFormatError",
    "create_request_to_mlserver_model",
    "decode_answer",
    "send_request_to_mlserver_model",
]
