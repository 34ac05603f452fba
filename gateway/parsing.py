"""Reading requests: JSON bodies, multipart forms, uploaded files and batch tables.

Each function raises ``BadRequest`` naming the field that is wrong; nothing here
knows about models beyond the wire format a model takes.
"""
from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, List, Optional, Tuple

import orjson
from fastapi import Request
from starlette.datastructures import UploadFile

from . import batch
from .directory import ServedModel
from .errors import BadRequest

# JSON nested deeper than this is refused (400): models take records, and Python's
# serialiser (the V2 request carries each document as a JSON string) stops near 1,000.
MAX_DEPTH = 64


def check_depth(value: Any, raw_size: int, what: str) -> Any:
    """``value`` unless it nests deeper than ``MAX_DEPTH`` (a short body cannot)."""
    if raw_size <= 2 * MAX_DEPTH:
        return value
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"{what} is nested more than {MAX_DEPTH} levels deep", field="body")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return value


PARAM_HEADER = "x-param-"


def parameters(request: Request, served: ServedModel) -> dict:
    """``X-Param-<name>`` headers as V2 request parameters, if the model takes them (its
    registered ``mlplatform.params``); any other is a 400 naming it, never dropped."""
    found = {key[len(PARAM_HEADER):]: value for key, value in request.headers.items()
             if key.startswith(PARAM_HEADER)}
    unknown = sorted(set(found) - set(served.params))
    if unknown:
        takes = ", ".join(served.params) or "none"
        raise BadRequest(f"model {served.name!r} takes no parameter(s) {', '.join(unknown)} "
                         f"(X-Param-* headers); it takes: {takes}", field="X-Param-" + unknown[0])
    return found


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest("the body is empty; send JSON", field="body")
    try:
        return check_depth(orjson.loads(raw), len(raw), "the JSON body")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON ({exc})", field="body") from exc


async def form(request: Request):
    try:
        return await request.form(max_part_size=request.app.state.settings.max_body_bytes)
    except Exception as exc:  # malformed multipart
        if getattr(exc, "status", None) == 413:
            raise
        raise BadRequest(f"unreadable multipart body ({exc})", field="body") from exc


async def uploaded(request: Request, field: str) -> bytes:
    upload = (await form(request)).get(field)
    if not isinstance(upload, UploadFile):
        raise BadRequest(f"missing file field {field!r} in the multipart form", field=field)
    return await upload.read()


@dataclass
class Upload:
    """A batch upload, in a file that can be read more than once (spooled to disk beyond
    ``SPOOL_IN_MEMORY``): the multipart field ``file`` or the whole body."""

    file: BinaryIO
    filename: str
    content_type: str

    def is_csv(self) -> bool:
        return self.filename.lower().endswith(".csv") or "text/csv" in self.content_type

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()


SPOOL_IN_MEMORY = 1 << 20  # as Starlette spools multipart files


async def batch_upload(request: Request) -> Upload:
    if is_multipart(request):
        upload = (await form(request)).get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("missing file field 'file' in the multipart form", field="file")
        upload.file.seek(0)
        return Upload(upload.file, upload.filename or "upload", upload.content_type or "")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    async for piece in request.stream():  # the size limit is counted by limits.BodySizeLimit
        spool.write(piece)
    spool.seek(0)
    return Upload(spool, "body", request.headers.get("content-type", ""))


def takes_csv(upload: Upload, served: ServedModel) -> bool:
    """A CSV for a model that takes JSON rows: scored in chunks (``chunked.py``)."""
    return upload.is_csv() and served.input_format != "base64"


async def batch_rows(upload: Upload, served: ServedModel, limits: batch.ZipLimits,
                     label: Optional[str]) -> Tuple[Any, List[Any]]:
    """The rows of a JSON list (dicts) or a zip of images ((name, bytes)) and, with
    ``label``, the truth.  Read and parsed in a worker thread (big uploads would hold
    the event loop, and every other request with it)."""
    return await asyncio.to_thread(_rows, upload, served, limits, label)


def _rows(upload: Upload, served: ServedModel, limits: batch.ZipLimits,
          label: Optional[str]) -> Tuple[Any, List[Any]]:
    data, filename = upload.file.read(), upload.filename
    if served.input_format == "base64":
        return _images(data, filename, upload.content_type, served, limits, label)
    try:
        rows = batch.json_records(check_depth(orjson.loads(data), len(data), repr(filename)))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{filename!r} is neither CSV nor a JSON list ({exc})",
                         field="file") from exc
    if label is None:
        return rows, []
    missing = [i for i, r in enumerate(rows) if not isinstance(r, dict) or r.get(label) is None]
    if missing:
        raise BadRequest(f"row(s) {', '.join(map(str, missing[:10]))} have no label "
                         f"{label!r}", field="label")
    truth = [r[label] for r in rows]
    return [{k: v for k, v in r.items() if k != label} for r in rows], truth


def _images(data: bytes, filename: str, content_type: str, served: ServedModel,
            limits: batch.ZipLimits, label: Optional[str]) -> Tuple[Any, List[Any]]:
    if not (filename.lower().endswith(".zip") or "zip" in content_type or data[:2] == b"PK"):
        raise BadRequest(f"model {served.name!r} takes images: upload a .zip", field="file")
    archive = batch.read_zip(data, filename, limits)
    rows = archive.entries
    if label is None:
        return rows, []
    missing = [n for n, _ in rows if n not in archive.labels]
    if missing:
        raise BadRequest(f"no label for {', '.join(missing[:5])}: add labels.csv (file,label) "
                         "or put each image in a folder named after its class", field="file")
    return rows, [archive.labels[n] for n, _ in rows]
