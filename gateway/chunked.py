"""CSV batches in chunks: read, score and render ``CHUNK_ROWS`` rows at a time.

Why: a 31 MB CSV (800,000 rows) to /forward_batch, handled whole, added 627 MB to
the gateway (the table, 800,000 answer dicts and their JSON at once) and held
``/health`` up to 197 ms while its big C calls ran (docs/benchmarks.md).  Here
the upload stays in its spooled file, each chunk is parsed, checked, scored and
rendered in worker threads, and the rendered rows go to a spooled temporary file;
only the metrics' small per-row values are kept.

The answer starts only after every chunk is scored, so a bad cell in the last
row is still a 400 naming it (and a model failure a 403), never a broken 200.
The answer is then streamed from the file with its ``Content-Length``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, Iterator, List, Optional

import pandas as pd
from fastapi.responses import StreamingResponse

from . import batch, scoring
from .context import Gateway
from .directory import ServedModel
from .errors import BadRequest, ModelFailed, NotLoaded
from .evaluation import metrics, prediction_of, normal

# 20,000 rows of the fraud table: ~25 ms of pandas parsing per chunk, the longest the
# event loop waits for the GIL (bench/bench_hostile_uploads.py).
CHUNK_ROWS = 20_000
SPOOL_IN_MEMORY = 4 * 1024 * 1024  # rendered answers beyond this go to a temporary file
STREAM_PIECE = 1 << 20


@dataclass
class Scored:
    """What the chunks left: the rendered rows and, for /evaluate, what metrics need."""

    served: ServedModel
    rows: int = 0
    spool: Any = None
    truth: List[str] = field(default_factory=list)
    predicted: List[str] = field(default_factory=list)
    scores: List[Optional[float]] = field(default_factory=list)


async def answer(gateway: Gateway, served: ServedModel, source: BinaryIO, filename: str,
                 label: Optional[str]) -> StreamingResponse:
    """The route's answer for a CSV upload: ``/forward_batch`` (``label`` None) or
    ``/evaluate``."""
    scored = await _score_all(gateway, served, source, filename, label)
    gateway.monitoring.batch_size(_route(label), scored.served.name, scored.rows)
    head: Dict[str, Any] = {"model": scored.served.name, "version": scored.served.version,
                            "rows": scored.rows}
    if label is not None:
        head["metrics"] = await asyncio.to_thread(metrics, scored.truth, scored.predicted,
                                                  scored.scores)
    opening = scoring.render(head)[:-1] + b',"results":['
    closing = b"]}"
    size = scored.spool.tell()
    scored.spool.seek(0)
    headers = {"X-Model-Name": scored.served.name,
               "Content-Length": str(len(opening) + size + len(closing))}
    if scored.served.version:
        headers["X-Model-Version"] = scored.served.version
    return StreamingResponse(_stream(opening, scored.spool, closing),
                             media_type="application/json", headers=headers)


def _stream(opening: bytes, spool: Any, closing: bytes) -> Iterator[bytes]:
    # A sync iterator: Starlette reads it in a worker thread (the file may be on disk).
    try:
        yield opening
        while piece := spool.read(STREAM_PIECE):
            yield piece
        yield closing
    finally:
        spool.close()


async def _score_all(gateway: Gateway, served: ServedModel, source: BinaryIO, filename: str,
                     label: Optional[str]) -> Scored:
    """Every chunk on one model version.  If a deploy retires that version mid-way, the
    batch starts over once on the version served now (never answers from two)."""
    try:
        return await _chunks(gateway, dataclasses.replace(served, pinned=True), source,
                             filename, label)
    except NotLoaded:
        if served.pinned:
            raise
    now = await gateway.directory.successor(served)
    source.seek(0)
    return await _chunks(gateway, dataclasses.replace(now, pinned=True), source, filename,
                         label)


async def _chunks(gateway: Gateway, served: ServedModel, source: BinaryIO, filename: str,
                  label: Optional[str]) -> Scored:
    scored = Scored(served, spool=tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))
    try:
        reader = await asyncio.to_thread(_reader, source, filename)
        with reader:
            while (frame := await asyncio.to_thread(_next_chunk, reader, filename)) is not None:
                if frame.empty:  # a header and no rows
                    continue
                frame, truth = _checked(frame, filename, label)
                try:
                    answers, ids, _ = await scoring.score_batch(gateway, served, frame)
                except ModelFailed as exc:
                    raise _in_upload(exc, scored.rows, len(frame)) from exc
                await asyncio.to_thread(_render, scored, answers, ids, truth)
                # recorded per chunk; a batch that starts over on a new version records its
                # first chunks twice (rare: a switch during the upload)
                await gateway.monitoring.batch(_route(label), served, frame, answers)
    except BaseException:
        scored.spool.close()
        raise
    if scored.rows == 0:
        scored.spool.close()
        raise BadRequest(f"CSV {filename!r} has a header but no rows", field="file")
    return scored


def _route(label: Optional[str]) -> str:
    return "/forward_batch" if label is None else "/evaluate"


def _reader(source: BinaryIO, filename: str):
    try:
        return pd.read_csv(source, dtype_backend="numpy_nullable", chunksize=CHUNK_ROWS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as exc:
        raise batch.unreadable_csv(filename, exc) from exc


def _next_chunk(reader, filename: str) -> Optional[pd.DataFrame]:
    try:
        return next(reader)
    except StopIteration:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise batch.unreadable_csv(filename, exc) from exc


def _checked(frame: pd.DataFrame, filename: str, label: Optional[str]):
    """The chunk's features and truth; rows are named by their place in the whole file
    (a chunk's index continues from the one before)."""
    if "id" in frame.columns:
        batch.require_filled(frame, "id", filename)
    if label is None:
        return frame, []
    if label not in frame.columns:
        raise BadRequest(f"the CSV has no label column {label!r}", field="label")
    batch.require_filled(frame, label, filename)
    return frame.drop(columns=[label]), frame[label].tolist()


ROWS_NAMED = re.compile(r"\(rows ([0-9, ]+)( \.\.\.)?\)")


def _in_upload(failed: ModelFailed, first: int, count: int) -> ModelFailed:
    """The model's reason with rows counted in the whole upload: the model saw a chunk
    and counts from 0 there (``(rows 6, 9)`` from the table models' checks)."""
    if first == 0:
        return failed
    reason, shifted = ROWS_NAMED.subn(lambda m: "(rows " + ", ".join(
        str(first + int(n)) for n in m.group(1).split(",")) + (m.group(2) or "") + ")",
        failed.detail)
    if not shifted:
        reason += f" (in rows {first}-{first + count - 1} of the upload)"
    return ModelFailed(reason, **failed.extra)


def _render(scored: Scored, answers: List[Any], ids: List[Dict[str, Any]],
            truth: List[Any]) -> None:
    served, first = scored.served, scored.rows
    results = [{"row": first + i, **key, **({"label": truth[i]} if truth else {}),
                **scoring.as_dict(scoring.shaped(served, a))}
               for i, (key, a) in enumerate(zip(ids, answers))]
    if truth:
        scored.truth.extend(normal(v) for v in truth)
        for a in answers:
            predicted, score = prediction_of(a)
            scored.predicted.append(predicted)
            scored.scores.append(score)
    rendered = scoring.render(results)[1:-1]  # the rows without the list's brackets
    if first and rendered:
        scored.spool.write(b",")
    scored.spool.write(rendered)
    scored.rows += len(results)
