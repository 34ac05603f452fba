"""The prediction log: every answered prediction (model, version, route, request id,
inputs, outputs, latency, time) in a database table, written off the request path.

A request only appends a tuple to an in-memory queue (~0.2 us).  A writer task drains
the queue every ``FLUSH_SECONDS`` and hands the entries to a *writer process*
(``WriterProcess``), which turns them into JSON and inserts them in one transaction.
Why a process: for a 100,000-row ``/forward_batch`` that work is ~0.9 s of Python holding
the GIL; in a thread of the gateway it ran while the next chunk was scored and the answer
rendered, and halved ``/forward_batch`` throughput (175k -> 89k rows/s, bench/
bench_compose_batch.py, docs/benchmarks.md).  The gateway now only pickles the entries
(numpy buffers and small dicts).  The queue is bounded (``max_pending`` predictions): when the writer
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
import contextlib
import logging
import multiprocessing
import threading
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
# While a batch route is running the writer waits (its work would take CPU from the answer
# on a small machine), but never more than this behind: under back-to-back batches it
# writes anyway, and what it cannot keep up with is dropped and counted.
MAX_DEFER_SECONDS = 5.0
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
        self._batches = 0                 # batch routes running now (``batch_running``)
        self.written = 0
        self.engine = None                # for reading (GET /predictions) only
        self.writer = WriterProcess(url)
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

    @contextlib.contextmanager
    def batch_running(self):
        """Around a batch route: the writes wait meanwhile (``holding``)."""
        self._batches += 1
        try:
            yield
        finally:
            self._batches -= 1

    # -- the writer ---------------------------------------------------------------------
    async def start(self) -> None:
        # The writer process starts with the first write, not here: a gateway that answers
        # nothing (and every test app) does not pay its ~0.5 s start.
        self._task = asyncio.create_task(self._run(), name="prediction-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
        await asyncio.to_thread(self.writer.close)
        if self.engine is not None:
            self.engine.dispose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if not self.holding():
                await self.flush()
            if self.retention and time.monotonic() - self._last_prune > PRUNE_SECONDS:
                self._last_prune = time.monotonic()
                await self._guarded("prune", time.time() - self.retention.total_seconds())

    def holding(self, now: Optional[float] = None) -> bool:
        """Wait with the writes: a batch route is running and nothing queued is older
        than ``MAX_DEFER_SECONDS``."""
        now = time.time() if now is None else now
        return bool(self._batches and self.pending
                    and now - self.pending[0].moment < MAX_DEFER_SECONDS)

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
            if not await self._guarded("write", batch):
                self._drop(DATABASE, count)
                return
            self.written += count

    async def _guarded(self, command: str, *args: Any) -> bool:
        try:
            await asyncio.to_thread(self.writer.call, command, *args)
            return True
        except Exception as exc:
            self._warn(f"prediction log: {self._where()} failed: {exc}")
            return False

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
            self.engine = _connect(self.url)
        query = select(predictions).where(predictions.c.id > after)
        if model:
            query = query.where(predictions.c.model == model)
        if since is not None:
            query = query.where(predictions.c.time >= since.timestamp())
        query = query.order_by(predictions.c.id).limit(min(limit, PAGE_AT_MOST))
        with self.engine.connect() as connection:
            return [_public(row._mapping) for row in connection.execute(query)]


class WriterProcess:
    """The log's database side in a process of its own (``spawn``: no copy of the
    gateway's threads or event loop).  ``call`` blocks (run it in a worker thread): it
    sends a command and waits for the answer; an error in the process comes back as a
    ``RuntimeError`` with its message, a process that died is started again next call."""

    def __init__(self, url: str):
        self.url = url
        self._process = None
        self._connection = None
        self._lock = threading.Lock()   # one command at a time: the flush and the pruning

    def call(self, command: str, *args: Any) -> Any:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            try:
                self._connection.send((command, args))
                status, value = self._connection.recv()
            except (EOFError, OSError) as exc:
                self._stop_process()
                raise RuntimeError(f"the prediction log's writer process stopped ({exc!r})")
        if status == "error":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        with self._lock:
            if self._process is not None and self._process.is_alive():
                try:
                    self._connection.send(("stop", ()))
                    self._connection.recv()
                except (EOFError, OSError):
                    pass
            self._stop_process()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve_writer, args=(child, self.url),
                                        name="mlplatform-prediction-log", daemon=True)
        self._process.start()
        child.close()

    def _stop_process(self) -> None:
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None


def serve_writer(connection, url: str) -> None:
    """The writer process: commands until ``stop`` or until the gateway is gone."""
    engine = None
    while True:
        try:
            command, args = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if command == "stop":
            connection.send(("ok", None))
            return
        try:
            if engine is None:
                engine = _connect(url)
            value = WRITER_COMMANDS[command](engine, *args)
            connection.send(("ok", value))
        except Exception as exc:  # the database is down: say so, reconnect next time
            if engine is not None:
                engine.dispose()
                engine = None
            connection.send(("error", f"{type(exc).__name__}: {exc}"))


def _connect(url: str):
    engine = open_engine(url)
    metadata.create_all(engine, tables=[predictions])
    return engine


def _write(engine, batch: List[Entry]) -> int:
    rows = [row for entry in batch for row in _rows(entry)]
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start:start + ROWS_PER_STATEMENT]
            cursor.execute(_insert(engine, len(chunk)), [v for row in chunk for v in row])
        connection.commit()
    finally:
        connection.close()
    return len(rows)


def _insert(engine, count: int) -> str:
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    values = "(" + ", ".join([marker] * len(COLUMNS)) + ")"
    return (f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "
            + ", ".join([values] * count))


def _prune(engine, cutoff: float) -> None:
    with engine.begin() as connection:
        connection.execute(delete(predictions).where(predictions.c.time < cutoff))


WRITER_COMMANDS = {"write": _write, "prune": _prune}

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
