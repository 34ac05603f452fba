"""The base class of every served model: one ``predict`` for MLServer and notebooks.

The life of a request follows the lifecycle KServe models use:
``load_context`` (load) -> ``decode_request`` (pre-process) -> ``score``
(predict) -> ``encode_response`` (post-process).

Two callers reach ``predict``:

* MLServer's ``mlserver_mlflow.MLflowRuntime`` hands over the raw
  ``InferenceRequest`` when the model has no signature (the codec pattern of the
  platform guide).  ``predict`` decodes the JSON documents, scores them and
  encodes the answers as the ``output`` tensor.
* A notebook calls ``mlflow.pyfunc.load_model(uri).predict({"a": 10})``;
  ``predict`` scores the data directly and returns the plain answer, exactly
  as it would arrive over the wire.

Subclasses implement ``score`` (one JSON document in, one JSON-able answer out)
and, when they have files to load, ``load_context``.  Models must be logged
without a signature (``signature=False``), or MLServer enforces the signature
and never hands the raw request over.
"""
from __future__ import annotations

import base64
import json
import sys
from typing import Any, Dict, List, Tuple

import mlflow
import numpy as np

from .errors import ModelAnswerError, ModelInputError
from .table import TableError, decode_columns
from .wire import (
    BASE64,
    BYTES,
    OUTPUT_NAME,
    TABLE,
    WireFormatError,
    decode_base64_tensor,
    decode_json_tensor,
    to_json,
)


def is_inference_request(value: Any) -> bool:
    """True for an MLServer ``InferenceRequest``.

    MLServer can only have sent one if it is imported in this process, so the
    check costs nothing (and imports nothing) in a notebook.
    """
    types = sys.modules.get("mlserver.types")
    return types is not None and isinstance(value, types.InferenceRequest)


def plain_json(value: Any) -> Any:
    """Input as JSON values, whatever MLflow's own tooling wrapped it in.

    MLflow's scoring server (``/invocations``, ``mlflow models predict``, the
    input-example check at logging time) turns ``{"a": 10}`` into
    ``{"a": array(10)}``; the model should see the same JSON a V2 client sends.
    A DataFrame becomes its records.
    """
    if _is_frame(value):
        value = value.to_dict(orient="records")
    return json.loads(to_json(value))


def _is_frame(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "to_dict")


def _content_type(request) -> Any:
    parameters = getattr(request, "parameters", None)
    return getattr(parameters, "content_type", None)


def _text_as_bytes(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Text output columns as UTF-8 bytes, which both MLServer protocols can send."""
    encoded = {}
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype == object or values.dtype.kind == "U":
            values = np.array([v.encode() if isinstance(v, str) else v for v in values.tolist()],
                              dtype=object)
        encoded[name] = values
    return encoded


# Parameters the Open Inference Protocol and its common extensions define for the
# request itself, never for a model: tritonclient's plain ``infer()`` sends
# ``binary_data_output`` (binary tensor data extension), and shared memory, sequence,
# scheduling and classification have theirs.  ``content_type`` and ``headers`` are
# MLServer's declared fields already.
PROTOCOL_PARAMETERS = frozenset({
    "binary_data_output", "binary_data", "binary_data_size",
    "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size",
    "sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
    "classification", "content_type", "headers",
})


def request_parameters(request) -> Dict[str, Any]:
    """The model's own ``parameters`` of a V2 request: what neither MLServer nor the
    protocol's extensions define (PROTOCOL_PARAMETERS)."""
    parameters = getattr(request, "parameters", None)
    extra = getattr(parameters, "model_extra", None) or {}
    return {name: value for name, value in extra.items() if name not in PROTOCOL_PARAMETERS}


class JsonCodecModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model that takes JSON documents and answers with JSON documents.

    An image model sets ``input_format = "base64"`` (its documents are the raw
    bytes of each image) and, if it answers with bytes, ``output_format =
    "base64"`` (answers travel, and reach notebooks, as base64 text).
    """

    input_format = "json"
    output_format = "json"
    # True for models that score a whole table at once (``score_table``); the gateway
    # then sends batches as columns instead of one JSON document per row.
    accepts_table = False
    # The V2 request ``parameters`` the model reads (an imported folder: ``target``); any
    # other parameter is refused with a 400 naming it, never silently dropped.
    accepted_params: Tuple[str, ...] = ()

    # MLflow asks every PythonModel for ``predict`` type hints and warns without them;
    # hints would turn on its input validation and a signature, which the codec must
    # avoid.  This is MLflow's own switch for skipping that check (see constraints.txt).
    _skip_type_hint_validation = True

    def predict(self, context, model_input, params=None):
        # Options for the model (an imported folder's ``target``) come from the V2 request's
        # ``parameters``, read here from the raw request: MLflow drops ``params`` for models
        # without a params schema before they reach this method.
        if is_inference_request(model_input):
            if _content_type(model_input) == TABLE:
                return _text_as_bytes(self.score_table(self.decode_table(model_input)))
            documents = self.decode_request(model_input)
            options = {**(params or {}), **self._checked(request_parameters(model_input))}
            return self.encode_response(self.score_documents(documents, options))
        if _is_frame(model_input):
            # A DataFrame is a batch (MLServer decodes its own "pd" tables into one, and so
            # does MLflow's scoring server): the answer is columns, which both can encode.
            if self.accepts_table:
                return self.score_table({str(c): model_input[c].to_numpy() for c in model_input})
            return self.encode_response(self.score_documents(plain_json(model_input), params or {}))
        # The notebook path: answer exactly what a client of the server would get.
        answer = self.score_documents([self._notebook_input(model_input)], params or {})[0]
        if self.output_format == BASE64:
            return self._answer_text(answer)
        return json.loads(self._answer_text(answer))

    def _checked(self, parameters: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(parameters) - set(self.accepted_params))
        if unknown:
            takes = ", ".join(self.accepted_params) or "none"
            raise ModelInputError(f"unknown parameter(s) {', '.join(unknown)}; this model takes: "
                                  f"{takes}")
        return parameters

    def decode_request(self, request) -> List[Any]:
        """The documents carried by the request's single BYTES input."""
        inputs = request.inputs
        if len(inputs) != 1:
            raise ModelInputError(
                f"expected exactly one {BYTES} input, got {len(inputs)} inputs"
            )
        tensor = inputs[0]
        try:
            if self.input_format == BASE64:
                return decode_base64_tensor(tensor.name, tensor.datatype, tensor.data.root)
            return decode_json_tensor(tensor.name, tensor.datatype, tensor.data.root)
        except WireFormatError as exc:
            raise ModelInputError(str(exc)) from exc

    def encode_response(self, answers: List[Any]) -> Dict[str, np.ndarray]:
        """Answers as the ``output`` tensor, one string per request document.

        A single answer is a 0-d array, which MLServer sends with shape ``[1]`` as
        in the guide; several answers keep one row each, so MLServer's adaptive
        batching can split them back to their requests.
        """
        # UTF-8 bytes, not str: MLServer's gRPC answer needs bytes for a BYTES tensor
        # (str fails there with "expected bytes, str found"); its REST answer turns
        # them back into the same JSON string.
        texts = [self._answer_text(answer).encode() for answer in answers]
        if len(texts) == 1:
            return {OUTPUT_NAME: np.array(texts[0], dtype=object)}
        return {OUTPUT_NAME: np.array(texts, dtype=object)}

    def _answer_text(self, answer: Any) -> str:
        if self.output_format == BASE64:
            return base64.b64encode(answer).decode("ascii")
        try:
            return to_json(answer, allow_nan=False)
        except ValueError as exc:
            raise ModelAnswerError(f"{type(self).__name__}: {exc}") from exc

    def _notebook_input(self, value: Any) -> Any:
        if self.input_format != BASE64:
            return plain_json(value)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ModelInputError("expected image bytes or their base64 text") from exc
        raise ModelInputError(f"expected image bytes, got {type(value).__name__}")

    def decode_table(self, request) -> Dict[str, np.ndarray]:
        """A table request (``content_type: mlplatform_table``): one 1-d array per column."""
        try:
            return decode_columns(request.inputs)
        except TableError as exc:
            raise ModelInputError(str(exc)) from exc

    def score_table(self, columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Score a whole table at once; answers as output columns. Tabular models override."""
        raise ModelInputError("this model takes JSON documents, not a table")

    def score_documents(self, documents: List[Any], params: Dict[str, Any]) -> List[Any]:
        """Score each document; override to score a batch in one go or to use ``params``."""
        return [self.score(document) for document in documents]

    def score(self, data: Any) -> Any:
        """Answer one document.  Raise ``ModelInputError`` for bad data."""
        raise NotImplementedError
