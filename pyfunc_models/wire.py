"""The JSON-over-V2 wire format, in one place for both ends of the wire.

The platform guide (seed 001) fixes the format: a request carries one ``BYTES``
input whose data is a JSON string; the answer carries one ``BYTES`` output
named ``output`` whose data is a JSON string.  Image models take the image
bytes instead, as base64 text with the ``base64`` content type (the V2 JSON
way to carry binary data); an image answer is base64 text the same way.  The model's codec (server side)
and the client both speak it, so the rules live here and nowhere else.

This module needs only the standard library: the client imports it without
pulling in MLServer, MLflow or numpy.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable, Dict, Iterable, List, Sequence

BYTES = "BYTES"
OUTPUT_NAME = "output"
BASE64 = "base64"  # MLServer's content type for binary data carried as base64 text
# A table: one input per column (pyfunc_models.table). Not MLServer's own "pd": for
# that, MLServer decodes the request into a DataFrame before the model sees it, and the
# codec needs the raw typed columns.
TABLE = "mlplatform_table"


class WireFormatError(ValueError):
    """A tensor does not hold what the JSON-over-V2 format requires."""


def to_json(value: Any, allow_nan: bool = True) -> str:
    """Serialise a document, turning numpy scalars and arrays into plain JSON.

    Models naturally return ``numpy.int64`` or ``numpy.ndarray``; ``json`` refuses
    them, so they are converted here instead of in every model.  With
    ``allow_nan=False`` (answers) NaN and infinity are refused: JSON cannot carry
    them, and a reader would see ``null`` or fail.
    """
    try:
        return json.dumps(value, default=_plain, ensure_ascii=False, allow_nan=allow_nan)
    except ValueError as exc:
        if allow_nan or "Out of range float" not in str(exc):
            raise
        raise ValueError("the answer holds a number JSON cannot carry (NaN or infinity)") from exc


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return value.tolist()
    if hasattr(value, "isoformat"):  # dates and datetimes
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_request(data: Any, input_name: str) -> Dict[str, Any]:
    """Build the V2 request body for one JSON document, exactly as the guide does.

    The guide sends ``shape: [len(json_string)]`` and the string itself as
    ``data``; MLServer accepts it and standard V2 servers read it as one element.
    """
    document = to_json(data)
    return {
        "inputs": [
            {
                "name": input_name,
                "shape": [len(document)],
                "datatype": BYTES,
                "data": document,
            }
        ]
    }


def image_request(image: bytes, input_name: str) -> Dict[str, Any]:
    """The V2 request body for one image: a BYTES input with the ``base64`` content type."""
    return images_request([image], input_name)


def images_request(images: Sequence[bytes], input_name: str) -> Dict[str, Any]:
    """Several images in one request; the model answers each, in order."""
    return {
        "inputs": [
            {
                "name": input_name,
                "shape": [len(images)],
                "datatype": BYTES,
                "parameters": {"content_type": BASE64},
                "data": [base64.b64encode(image).decode("ascii") for image in images],
            }
        ]
    }


def documents_request(documents: Sequence[Any], input_name: str) -> Dict[str, Any]:
    """Several JSON documents in one standard V2 request (shape ``[n]``), one answer each."""
    texts = [to_json(document) for document in documents]
    return {"inputs": [{"name": input_name, "shape": [len(texts)], "datatype": BYTES,
                        "data": texts}]}


def tensor_strings(data: Any, where: str) -> List[str]:
    """The strings held by a BYTES tensor's ``data``, however the sender nested them.

    The guide sends a bare string; standard V2 clients send ``["..."]``; a batch
    is ``["...", "..."]``, possibly nested by shape (``[["..."]]``).
    """
    if isinstance(data, (str, bytes)):
        return [_text(data, where, 0)]
    if not isinstance(data, list):
        raise WireFormatError(f"{where}: data must be a JSON string or a list of them")
    flat = list(_flatten(data))
    if not flat:
        raise WireFormatError(f"{where}: data is empty")
    return [_text(item, where, i) for i, item in enumerate(flat)]


def _flatten(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _text(item: Any, where: str, index: int) -> str:
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireFormatError(f"{where}: element {index} is not UTF-8 text") from exc
    if isinstance(item, str):
        return item
    raise WireFormatError(
        f"{where}: element {index} is {type(item).__name__}, expected a JSON string"
    )


def _decode_elements(name: str, datatype: str, data: Any, holding: str,
                     decode: Callable[[str], Any]) -> List[Any]:
    """Apply ``decode`` to every string of a BYTES tensor; errors name the element."""
    where = f"tensor {name!r}"
    if datatype != BYTES:
        raise WireFormatError(f"{where}: datatype is {datatype}, expected {BYTES} holding {holding}")
    decoded = []
    for index, text in enumerate(tensor_strings(data, where)):
        try:
            decoded.append(decode(text))
        except (ValueError, binascii.Error) as exc:  # JSONDecodeError is a ValueError
            raise WireFormatError(f"{where}: element {index} is not valid {holding} ({exc})") from exc
    return decoded


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def decode_json_tensor(name: str, datatype: str, data: Any) -> List[Any]:
    """Parse every element of a BYTES tensor as a JSON document."""
    return _decode_elements(name, datatype, data, "JSON", json.loads)


def decode_base64_tensor(name: str, datatype: str, data: Any) -> List[bytes]:
    """Decode every element of a BYTES tensor sent with the ``base64`` content type."""
    return _decode_elements(name, datatype, data, "base64", _b64)


def decode_json_response(body: Dict[str, Any]) -> Any:
    """The answer held by a V2 response body: one document, or a list for a batch."""
    name, datatype, data = _answer_tensor(body)
    documents = decode_json_tensor(name, datatype, data)
    return documents[0] if len(documents) == 1 else documents


def decode_base64_response(body: Dict[str, Any]) -> Any:
    """The base64 text of a binary answer (e.g. a PNG), one string or a list for a batch."""
    name, datatype, data = _answer_tensor(body)
    strings = tensor_strings(data, f"tensor {name!r}")
    _decode_elements(name, datatype, strings, "base64", _b64)  # validates each element
    return strings[0] if len(strings) == 1 else strings


def _answer_tensor(body: Dict[str, Any]):
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not outputs:
        raise WireFormatError("the response has no outputs")
    chosen = next((o for o in outputs if o.get("name") == OUTPUT_NAME), None)
    if chosen is None:
        if len(outputs) != 1:
            names = ", ".join(repr(o.get("name")) for o in outputs)
            raise WireFormatError(f"the response has no {OUTPUT_NAME!r} output (got {names})")
        chosen = outputs[0]
    return chosen.get("name", OUTPUT_NAME), chosen.get("datatype", ""), chosen.get("data")
