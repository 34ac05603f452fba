"""The prediction log: every answered prediction (model, version, route, request id,
inputs, outputs, latency, time) in a database table, written off the request path.

A request only appends a tuple to an in-memory queue (~0.2 us).  A writer task drains
the queue every ``FLUSH_SECONDS`` and inserts the entries in one transaction, in a
worker thread.  The queue is bounded (``max_pending`` predictions): when the writer
falls behind, or the database is down, the *oldest* unwritten entries are dropped and
counted (``mlplatform_gateway_prediction_log_dropped_total{reason}``) -- an answer is
never delayed and memory never grows without bound.  Entries older than the retention
are deleted every ``PRUNE_SECONDS``.

The table lives in the feature-store database by default (SQLite file in the state
folder, or the PostgreSQL the feature store uses), so labelled data and what the
served models answered sit side by side.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Deque, Dict, List, Optional

import orjson
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)

from .store import open_engine

log = logging.getLogger("mlplatform.gateway")

FLUSH_SECONDS = 0.5
PRUNE_SECONDS = 60.0
WRITE_AT_MOST = 20_000          # entries per transaction
# Rows per INSERT statement (800 parameters: under SQLite's oldest limit of 999).  One
# statement per row -- executemany -- let the writer thread take the GIL back once per
# row: under load the event loop was forced to yield ~1,000 times per flush, and the
# gateway lost ~12 % of its throughput at c=16 (bench_monitoring); in-process, where
# the loop is never contended, the cost did not show.
ROWS_PER_STATEMENT = 100
PAGE_AT_MOST = 1_000
FULL, DATABASE = "full", "database"

metadata = MetaData()
predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),  # Unix seconds (UTC)
    Column("model", String(200), nullable=False, index=True),
    Column("version", String(32), nullable=False),
    Column("route", String(200), nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("inputs", Text, nullable=False),
    Column("outputs", Text, nullable=False),
    Column("latency_ms", Float, nullable=True),
)


@dataclass(slots=True)
class Entry:
    """One request's predictions: a single call (``rows`` None) or a batch's rows."""

    moment: float                     # time.time() of the answer
    model: str
    version: str
    route: str
    request_id: Optional[str]
    latency: Optional[float]          # seconds from the request's arrival
    inputs: Any                       # one input, or a list / DataFrame of rows
    outputs: Any                      # one answer, or a list of answers
    rows: Optional[int] = None        # set for batches: how many predictions

    @property
    def count(self) -> int:
        return 1 if self.rows is None else self.rows


class PredictionLog:
    def __init__(self, url: str, max_pending: int, retention_days: float,
                 on_drop: Callable[[str, int], None] = lambda reason, count: None):
        self.url = url
        self.max_pending = max(1, max_pending)
        self.retention = timedelta(days=retention_days) if retention_days > 0 else None
        self.on_drop = on_drop
        self.pending: Deque[Entry] = deque()
        self.pending_count = 0
        self.written = 0
        self.engine = None
        self._task: Optional[asyncio.Task] = None
        self._last_prune = 0.0
        self._last_warning = 0.0

    # -- the request path -------------------------------------------------------------
    def record(self, entry: Entry) -> None:
        if entry.count > self.max_pending:  # a batch larger than the queue: keep its tail
            self._drop(FULL, entry.count - self.max_pending)
            entry = _tail(entry, self.max_pending)
        self.pending.append(entry)
        self.pending_count += entry.count
        while self.pending_count > self.max_pending:
            oldest = self.pending.popleft()
            self.pending_count -= oldest.count
            self._drop(FULL, oldest.count)

    # -- the writer ---------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self.engine = await asyncio.to_thread(self._connect)
        except Exception as exc:  # the database is down: keep serving, drop and count
            self._warn(f"prediction log: cannot open {self._where()}: {exc}")
        self._task = asyncio.create_task(self._run(), name="prediction-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
        if self.engine is not None:
            self.engine.dispose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
            if self.retention and time.monotonic() - self._last_prune > PRUNE_SECONDS:
                self._last_prune = time.monotonic()
                await self._guarded(self._prune)

    async def flush(self) -> None:
        """Write what is queued now (several transactions when there is much)."""
        while self.pending:
            batch: List[Entry] = []
            count = 0
            while self.pending and count < WRITE_AT_MOST:
                entry = self.pending.popleft()
                self.pending_count -= entry.count
                batch.append(entry)
                count += entry.count
            if not await self._guarded(self._write, batch):
                self._drop(DATABASE, count)
                return

    async def _guarded(self, work: Callable, *args: Any) -> bool:
        try:
            if self.engine is None:
                self.engine = await asyncio.to_thread(self._connect)
            await asyncio.to_thread(work, *args)
            return True
        except Exception as exc:
            self._warn(f"prediction log: {self._where()} failed: {exc}")
            return False

    def _connect(self):
        engine = open_engine(self.url)
        metadata.create_all(engine, tables=[predictions])
        return engine

    def _write(self, batch: List[Entry]) -> None:
        rows = [row for entry in batch for row in _rows(entry)]
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start:start + ROWS_PER_STATEMENT]
                cursor.execute(self._insert(len(chunk)), [v for row in chunk for v in row])
            connection.commit()
        finally:
            connection.close()
        self.written += len(rows)

    def _insert(self, count: int) -> str:
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        values = "(" + ", ".join([marker] * len(COLUMNS)) + ")"
        return (f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "
                + ", ".join([values] * count))

    def _prune(self) -> None:
        cutoff = time.time() - self.retention.total_seconds()
        with self.engine.begin() as connection:
            connection.execute(delete(predictions).where(predictions.c.time < cutoff))

    def _drop(self, reason: str, count: int) -> None:
        self.on_drop(reason, count)

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._last_warning > 60:  # one line a minute, not per batch
            self._last_warning = time.monotonic()
            log.warning("%s (predictions are dropped and counted meanwhile)", message[:500])

    def _where(self) -> str:
        return self.url.split("@")[-1]  # no password in the log

    # -- reading -----------------------------------------------------------------------
    def page(self, model: Optional[str], since: Optional[datetime], after: int,
             limit: int) -> List[Dict[str, Any]]:
        if self.engine is None:
            self.engine = self._connect()
        query = select(predictions).where(predictions.c.id > after)
        if model:
            query = query.where(predictions.c.model == model)
        if since is not None:
            query = query.where(predictions.c.time >= since.timestamp())
        query = query.order_by(predictions.c.id).limit(min(limit, PAGE_AT_MOST))
        with self.engine.connect() as connection:
            return [_public(row._mapping) for row in connection.execute(query)]


COLUMNS = ("time", "model", "version", "route", "request_id", "latency_ms", "inputs", "outputs")


def _rows(entry: Entry):
    """The entry's rows as tuples in ``COLUMNS`` order."""
    latency = None if entry.latency is None else round(entry.latency * 1000, 3)
    common = (entry.moment, entry.model, entry.version, entry.route, entry.request_id, latency)
    if entry.rows is None:
        yield (*common, _json(entry.inputs), _json(entry.outputs))
        return
    inputs = entry.inputs
    if hasattr(inputs, "to_dict"):  # a DataFrame chunk
        inputs = inputs.to_dict("records")
    for features, answer in zip(inputs, entry.outputs):
        yield (*common, _json(features), _json(answer))


def _tail(entry: Entry, keep: int) -> Entry:
    inputs = entry.inputs.iloc[-keep:] if hasattr(entry.inputs, "iloc") else entry.inputs[-keep:]
    return Entry(entry.moment, entry.model, entry.version, entry.route, entry.request_id,
                 entry.latency, inputs, entry.outputs[-keep:], keep)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY
                        | orjson.OPT_NON_STR_KEYS).decode()


def _public(row) -> Dict[str, Any]:
    return {"id": row["id"],
            "time": datetime.fromtimestamp(row["time"], timezone.utc).isoformat(),
            "model": row["model"], "version": row["version"], "route": row["route"],
            "request_id": row["request_id"], "latency_ms": row["latency_ms"],
            "inputs": orjson.loads(row["inputs"]), "outputs": orjson.loads(row["outputs"])}


def image_summary(content: bytes) -> Dict[str, Any]:
    """What the log keeps of an image input: its size, not its bytes."""
    return {"image_bytes": len(content)}
