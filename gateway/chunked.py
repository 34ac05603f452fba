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
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Sequence

import pandas as pd
from fastapi.responses import StreamingResponse

from . import answer_rows, batch, scoring
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
    found = None
    if label is not None:
        found = await asyncio.to_thread(metrics, scored.truth, scored.predicted, scored.scores)
    head = answer_rows.opening(scored.served, scored.rows, found)
    size = scored.spool.tell()
    scored.spool.seek(0)
    headers = {"X-Model-Name": scored.served.name,
               "Content-Length": str(len(head) + size + len(answer_rows.CLOSING))}
    if scored.served.version:
        headers["X-Model-Version"] = scored.served.version
    return StreamingResponse(_stream(head, scored.spool, answer_rows.CLOSING),
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


@dataclass
class Chunk:
    """A chunk on its way: its rows' place in the upload, its table and labels, and the
    task scoring it."""

    first: int
    frame: pd.DataFrame
    truth: Optional[List[Any]]
    scoring: asyncio.Task


async def _chunks(gateway: Gateway, served: ServedModel, source: BinaryIO, filename: str,
                  label: Optional[str]) -> Scored:
    """Chunks through a pipeline one deep: while the model scores chunk k, the gateway reads
    and checks chunk k+1, then renders chunk k while the model scores k+1.  The model
    runs in another process (MLServer), so on two cores the gateway's share of the work
    (parsing, rendering: ~40 % of the path) overlaps the model's instead of adding to it
    (docs/benchmarks.md).  Answers are still written in row order, one chunk at a time."""
    scored = Scored(served, spool=tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))
    in_flight: Optional[Chunk] = None
    try:
        reader = await asyncio.to_thread(_reader, source, filename)
        with reader:
            parsed = 0
            while (read := await _read(reader, filename, label, in_flight)) is not None:
                frame, truth = read
                previous = in_flight
                answered = None if previous is None else await _answers(previous)
                in_flight = Chunk(parsed, frame, truth, asyncio.create_task(
                    scoring.score_batch(gateway, served, frame)))
                parsed += len(frame)
                if previous is not None:
                    await _finish(gateway, scored, previous, answered, label)
            if in_flight is not None:
                done, in_flight = in_flight, None
                await _finish(gateway, scored, done, await _answers(done), label)
    except BaseException:
        scored.spool.close()
        if in_flight is not None:  # a failed chunk or a cancelled request: stop the next
            in_flight.scoring.cancel()
            await asyncio.gather(in_flight.scoring, return_exceptions=True)
        raise
    if scored.rows == 0:
        scored.spool.close()
        raise BadRequest(f"CSV {filename!r} has a header but no rows", field="file")
    return scored


async def _read(reader, filename: str, label: Optional[str], in_flight: Optional[Chunk]):
    """The next chunk's features and labels (None at the end).  A problem in it waits for
    the chunk being scored: a failure in earlier rows is the one told."""
    try:
        while (frame := await asyncio.to_thread(_next_chunk, reader, filename)) is not None:
            if not frame.empty:  # (empty: a header and no rows)
                return _checked(frame, filename, label)
        return None
    except BadRequest:
        if in_flight is not None:
            await _answers(in_flight)
        raise


async def _answers(chunk: Chunk):
    try:
        return await chunk.scoring
    except ModelFailed as exc:
        raise _in_upload(exc, chunk.first, len(chunk.frame)) from exc


async def _finish(gateway: Gateway, scored: Scored, chunk: Chunk, answered: Any,
                  label: Optional[str]) -> None:
    answers, ids, _ = answered
    await asyncio.to_thread(_render, scored, answers, ids, chunk.truth)
    # recorded per chunk; a batch that starts over on a new version records its first
    # chunks twice (rare: a switch during the upload)
    gateway.monitoring.batch(_route(label), scored.served, chunk.frame, answers)


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
        return frame, None
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


def _render(scored: Scored, answers: Sequence[Any], ids: List[Dict[str, Any]],
            truth: Optional[List[Any]]) -> None:
    if truth is not None:
        scored.truth.extend(normal(v) for v in truth)
        for a in answers:
            predicted, score = prediction_of(a)
            scored.predicted.append(predicted)
            scored.scores.append(score)
    rendered = answer_rows.rows_json(scored.served, scored.rows, ids, truth, answers)
    if scored.rows and rendered:
        scored.spool.write(b",")
    scored.spool.write(rendered)
    scored.rows += len(answers)
