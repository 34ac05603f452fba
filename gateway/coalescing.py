"""Concurrent single-document calls to one model share one V2 request.

Under load most of MLServer's time per request is protocol work (HTTP, JSON,
request objects), not the model; a V2 request carrying several documents costs
little more than one carrying a single document.  So while a call to a model is
in flight, the documents that arrive for the same model wait in a queue and go
together in the next call; each caller gets its own answer back.

Nothing ever waits for a batch to fill: with no call in flight a document is
sent at once, so a lone client sees exactly the latency of a direct call.  This
is unlike MLServer's adaptive batching, which holds requests up to
``max_batch_time`` to form a batch.

A document that makes the model fail must not fail its neighbours: when a
shared call fails with the model's error, each of its documents is retried on
its own, so every caller gets the answer or the error it would have got alone.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple

from .errors import ModelFailed

# Sends documents to one model in one request; returns one answer per document.
SendDocuments = Callable[[List[Any]], Awaitable[List[Any]]]


@dataclass
class _Lane:
    """The queue and the calls in flight for one model version."""

    pending: Deque[Tuple[Any, asyncio.Future]] = field(default_factory=deque)
    in_flight: int = 0


class Coalescer:
    def __init__(self, max_batch: int = 32, max_in_flight: int = 2):
        """``max_in_flight`` calls per model at once (2 keeps the model server busy while
        the gateway handles the previous answer); ``max_batch`` documents per call."""
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._lanes: Dict[Tuple[str, str], _Lane] = {}
        self._drainers: Set[asyncio.Task] = set()  # asyncio keeps only weak references
        # Told (model key, documents) for every V2 request sent: the metrics' group sizes.
        self.on_send: Optional[Callable[[Tuple[str, str], int], None]] = None

    async def score(self, key: Tuple[str, str], document: Any, send: SendDocuments) -> Any:
        """The model's answer to ``document``; ``send`` is how to reach the model."""
        lane = self._lanes.setdefault(key, _Lane())
        if not lane.pending and lane.in_flight < self.max_in_flight:
            # Nobody waiting: send it from here (no task, no future: a lone client pays
            # nothing for sharing), then hand any queue that formed meanwhile to a drainer.
            lane.in_flight += 1
            if self.on_send is not None:
                self.on_send(key, 1)
            try:
                return (await send([document]))[0]
            finally:
                lane.in_flight -= 1
                if lane.pending and lane.in_flight < self.max_in_flight:
                    self._start_drainer(lane, send, key)
        future = asyncio.get_running_loop().create_future()
        lane.pending.append((document, future))
        if lane.in_flight < self.max_in_flight:
            self._start_drainer(lane, send, key)
        return await future

    def _start_drainer(self, lane: _Lane, send: SendDocuments, key: Tuple[str, str]) -> None:
        lane.in_flight += 1
        task = asyncio.ensure_future(self._drain(lane, send, key))
        self._drainers.add(task)
        task.add_done_callback(self._drainers.discard)

    async def _drain(self, lane: _Lane, send: SendDocuments, key: Tuple[str, str]) -> None:
        """Send what waits, in batches, until nothing does (``in_flight`` counted by the caller)."""
        try:
            while lane.pending:
                count = min(self.max_batch, len(lane.pending))
                batch = [lane.pending.popleft() for _ in range(count)]
                batch = [(document, future) for document, future in batch if not future.done()]
                if batch:  # callers that went away are not sent
                    if self.on_send is not None:
                        self.on_send(key, len(batch))
                    await self._send(batch, send)
        finally:
            lane.in_flight -= 1

    async def _send(self, batch: List[Tuple[Any, asyncio.Future]], send: SendDocuments) -> None:
        try:
            answers = await send([document for document, _ in batch])
        except ModelFailed as exc:
            if len(batch) > 1:
                # Someone's document failed the shared call: each one again, on its own.
                await asyncio.gather(*(self._send([one], send) for one in batch))
                return
            error: Exception = exc
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # unavailable, timeout: the same for every caller
            error = exc
        else:
            for (_, future), answer in zip(batch, answers):
                _settle(future, answer=answer)
            return
        for _, future in batch:
            _settle(future, error=error)


def _settle(future: asyncio.Future, answer: Any = None, error: Exception = None) -> None:
    if future.done():  # the caller went away (client disconnected)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(answer)
