"""Sending requests to the model and shaping its answers: the routes' one way to score.

* ``score_document``: one JSON document; concurrent calls to one model version
  share V2 requests (``coalescing.py``);
* ``score_batch``: many rows -- a table as columns to models that take tables
  (gRPC when configured), else one JSON document or image per row;
* ``infer``: one V2 request and its decoded answers.

A call routed to the served version (not pinned by alias or version) that finds
it unloaded -- a deploy just retired it -- is re-routed once to the version
served now, so a switch costs callers nothing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar

import pandas as pd
from fastapi.responses import ORJSONResponse, Response

from mlplatform.pyfunc_models.conventions import SHADOW, RouteRule
from mlplatform.pyfunc_models.table import encode_frame
from mlplatform.pyfunc_models.wire import (
    WireFormatError,
    decode_base64_response,
    decode_json_response,
    documents_request,
    images_request,
)

from . import batch
from .answer_rows import shaped
from .context import Gateway
from .directory import ServedModel
from .errors import GatewayError, ModelFailed, NotLoaded, Unavailable
from .splitting import takes_canary
from .request_id import current_request_id
from .table import TableAnswers, infer_in_parts

T = TypeVar("T")


async def on_served_version(gateway: Gateway, served: ServedModel,
                            call: Callable[[ServedModel], Awaitable[T]]) -> Tuple[T, ServedModel]:
    """``call(served)`` and the version it ran on: re-routed once if ``served`` was
    retired meanwhile."""
    try:
        return await call(served), served
    except NotLoaded:
        if served.pinned:
            raise
        now = await gateway.directory.successor(served)
        if now.version == served.version:
            raise
        return await call(now), now


async def score_document(gateway: Gateway, served: ServedModel,
                         document: Any) -> Tuple[Any, ServedModel]:
    """One JSON document's answer, and the version that gave it; concurrent calls to a
    model share V2 requests."""
    async def send(documents: List[Any]) -> List[Tuple[Any, ServedModel]]:
        answers, model = await on_served_version(
            gateway, served, lambda model: infer(gateway, model,
                                                 documents_request(documents, model.name)))
        return [(answer, model) for answer in answers]

    if gateway.settings.coalesce_max_batch <= 1:
        return (await send([document]))[0]
    return await gateway.coalescer.score((served.name, served.version or ""), document, send)


async def score_batch(gateway: Gateway, served: ServedModel,
                      rows: Any) -> Tuple[List[Any], List[Dict[str, Any]], ServedModel]:
    """Answers in input order, each row's id fields (``id`` column, or image file), and
    the version that answered."""
    if isinstance(rows, pd.DataFrame):
        ids = ([{"id": v} for v in rows["id"].tolist()] if "id" in rows.columns
               else [{}] * len(rows))
        if served.accepts_table:
            answers, model = await on_served_version(
                gateway, served, lambda model: _score_table(gateway, model, rows))
            return answers, ids, model
        return _with_ids(await _documents(gateway, served, batch.records_of(rows)), ids)
    if rows and isinstance(rows[0], tuple):  # images from a zip
        images = [content for _, content in rows]
        answered = await on_served_version(
            gateway, served, lambda model: infer(gateway, model, images_request(images, model.name)))
        return _with_ids(answered, [{"file": name} for name, _ in rows])
    if served.accepts_table and all(isinstance(r, dict) for r in rows):
        return await score_batch(gateway, served, batch.frame_of_records(rows))
    return _with_ids(await _documents(gateway, served, rows),
                     [{"id": r["id"]} if isinstance(r, dict) and "id" in r else {} for r in rows])


def _with_ids(answered: Tuple[List[Any], ServedModel], ids: List[Dict[str, Any]]):
    answers, model = answered
    return answers, ids, model


async def _documents(gateway: Gateway, served: ServedModel,
                     rows: List[Any]) -> Tuple[List[Any], ServedModel]:
    return await on_served_version(
        gateway, served, lambda model: infer(gateway, model, documents_request(rows, model.name)))


async def _score_table(gateway: Gateway, served: ServedModel,
                       rows: pd.DataFrame) -> TableAnswers:
    # Encoding and answer rows are CPU work on 100k+ rows: done in a worker thread, so the
    # event loop keeps answering other calls (/health, /forward) meanwhile.
    encoded = await asyncio.to_thread(encode_frame, rows)
    columns = await infer_in_parts(gateway.tables.infer_table, served.name, encoded,
                                   served.version, gateway.settings.table_request_bytes)
    try:
        return await asyncio.to_thread(TableAnswers, columns, len(rows))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFailed(f"the model's table answer is not usable: {exc}") from exc


async def infer(gateway: Gateway, served: ServedModel, body: Dict[str, Any]) -> List[Any]:
    """The answers, one per document sent (JSON values, or base64 text for image answers)."""
    answer = await gateway.upstream.infer(served.name, body, served.version,
                                          current_request_id())
    try:
        if served.output_format == "base64":
            decoded = decode_base64_response(answer)
        else:
            decoded = decode_json_response(answer)
    except WireFormatError as exc:
        raise ModelFailed(f"the model's answer is not in the expected format: {exc}") from exc
    expected = body["inputs"][0]["shape"][0] if isinstance(body["inputs"][0]["data"], list) else 1
    answers = decoded if expected > 1 else [decoded]
    if len(answers) != expected:
        raise ModelFailed(f"the model answered {len(answers)} items for {expected} inputs")
    return answers


async def routed(gateway: Gateway, served: ServedModel,
                 key: Optional[str]) -> Tuple[ServedModel, Optional[RouteRule]]:
    """For a call naming the model alone: its canary when the rule picks it (``key``: the
    call's canary key), and the shadow rule to copy the call to (``splitting.py``)."""
    if served.pinned:
        return served, None
    rule = await gateway.directory.rule(served.name)
    if rule is None:
        return served, None
    if rule.mode == SHADOW:
        return served, rule
    if takes_canary(rule, key):
        try:
            canary = await gateway.directory.resolve(f"{served.name}/{rule.version}")
        except GatewayError:  # the canary was just retired: the served version answers
            return served, None
        # Not pinned: retired mid-call, it is re-routed to the served version like any call.
        return dataclasses.replace(canary, pinned=False), None
    return served, None


async def score_with_shadow(gateway: Gateway, served: ServedModel, document: Any,
                            shadow: Optional[RouteRule]) -> Tuple[Any, ServedModel]:
    """``score_document``; with a shadow rule, the same document goes to the shadow version
    after the answer, in the background."""
    if shadow is None:
        return await score_document(gateway, served, document)
    started = time.perf_counter()
    answer, served = await score_document(gateway, served, document)

    async def copies(documents: List[Any]) -> List[Any]:
        reference = f"{served.name}/{shadow.version}"
        try:
            other = await gateway.directory.resolve(reference)
        except Unavailable:
            # `mlplatform route` loads the shadow version before it writes the rule, so an
            # index that lacks it predates the rule: read it again, once (found by a 10 s
            # window of failed copies in the shadow test).
            await gateway.directory.loaded(asked_after=time.monotonic())
            other = await gateway.directory.resolve(reference)
        if (len(documents) > 1 and other.accepts_table
                and all(isinstance(d, dict) for d in documents)):
            # the batch as one table (the /forward_batch path): no JSON per document
            return await _score_table(gateway, other, batch.frame_of_records(documents))
        return await infer(gateway, other, documents_request(documents, other.name))

    gateway.shadowing.send(served.name, shadow, answer, time.perf_counter() - started,
                           document, copies)
    return answer, served


def answered(gateway: Gateway, served: ServedModel, document: Any, answer: Any) -> Response:
    """A single call's answer, recorded (metrics, prediction log, drift window: what was
    asked is ``document``)."""
    gateway.monitoring.answered(served, document, answer)
    return with_model(shaped(served, answer), served)


def with_model(payload: Any, served: ServedModel) -> Response:
    """The answer with ``X-Model-Name`` / ``X-Model-Version``; ``bytes`` are sent as they are
    (already rendered JSON)."""
    headers = {"X-Model-Name": served.name}
    if served.version:
        headers["X-Model-Version"] = served.version
    if isinstance(payload, bytes):
        return Response(payload, media_type="application/json", headers=headers)
    return ORJSONResponse(payload, headers=headers)
