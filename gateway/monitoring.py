"""What the gateway records of the predictions it answers, in one place: the Prometheus
metrics (``metrics.py``), the prediction log (``prediction_log.py``), input drift
(``drift.py``) and the web page's live view (``live.py``).

The routes call ``answered`` for a single call and ``batch`` for a batch's rows; both
only append to in-memory structures (the log's queue, the drift window, the metric
counters).  Everything slower -- database writes, PSI -- happens in the background or
when asked.  ``MLPLATFORM_GATEWAY_MONITORING=false`` turns all of it off (the
benchmark's baseline, bench/bench_monitoring.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Optional, Sequence, Tuple

from .drift import DriftMonitor
from .live import LiveView
from .metrics import GatewayMetrics
from .prediction_log import Entry, PredictionLog, image_summary
from .request_context import REQUEST
from .request_id import current_request_id
from .settings import GatewaySettings


class Monitoring:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, registry: Any,
                 store: Any):
        self.enabled = settings.monitoring
        self.metrics = metrics
        self.store = store
        self.drift = DriftMonitor(registry, settings.drift_window, settings.drift_min_inputs,
                                  settings.drift_idle_seconds)
        self.live = LiveView(metrics)
        self.log: Optional[PredictionLog] = None
        if self.enabled and settings.prediction_log:
            self.log = PredictionLog(settings.prediction_log_url,
                                     settings.prediction_log_max_pending,
                                     settings.prediction_log_retention_days,
                                     on_drop=self._dropped)

    async def start(self) -> None:
        if self.log is not None:
            await self.log.start()

    async def stop(self) -> None:
        if self.log is not None:
            await self.log.stop()

    @contextlib.contextmanager
    def batch_in_flight(self):
        """Around a batch route: the prediction log holds its writes meanwhile (answers first)."""
        with self.log.batch_running() if self.log is not None else contextlib.nullcontext():
            yield

    # -- the request path -------------------------------------------------------------
    def answered(self, served: Any, document: Any, answer: Any) -> None:
        """One single call's answer (``document``: what was sent; an image's summary)."""
        if not self.enabled:
            return
        version = served.version or ""
        self.metrics.observe_answer(served.name, version, answer)
        self.drift.observe(served.name, version, document)
        if self.log is not None:
            started, path = REQUEST.get() or (None, "")
            latency = None if started is None else time.perf_counter() - started
            if served.output_format == "base64":
                answer = _image_answer(answer)
            self.log.record(Entry(time.time(), served.name, version, path,
                                  current_request_id(), latency, document, answer))

    def shared(self, key: Tuple[str, str], documents: int) -> None:
        if self.enabled:
            self.metrics.observe_shared(key[0], documents)

    def batch_size(self, route: str, model: str, rows: int) -> None:
        if self.enabled:
            self.metrics.observe_rows(route, model, rows)

    def batch(self, route: str, served: Any, rows: Any, answers: Sequence[Any]) -> None:
        """A batch's rows and answers (a DataFrame, JSON documents, or (file, image) pairs)."""
        if not self.enabled:
            return
        version = served.version or ""
        if isinstance(rows, list) and rows and isinstance(rows[0], tuple):  # images
            rows = [{"file": name, **image_summary(content)} for name, content in rows]
        if served.output_format == "base64":
            answers = [_image_answer(a) for a in answers]
        if hasattr(rows, "to_dict"):  # a table
            self.drift.observe_frame(served.name, version, rows)
        else:
            self.drift.observe_rows(served.name, version,
                                    [r for r in rows if isinstance(r, dict)])
        if self.log is not None:
            started = (REQUEST.get() or (None, ""))[0]
            latency = None if started is None else time.perf_counter() - started
            self.log.record(Entry(time.time(), served.name, version, route,
                                  current_request_id(), latency, rows, answers, len(answers)))

    # -- reading ------------------------------------------------------------------------
    async def render(self) -> bytes:
        """The Prometheus text, with the gauges read now (jobs, drift, the log's counts)."""
        if self.enabled:
            self.metrics.set_jobs(await asyncio.to_thread(self.store.job_counts))
            self.metrics.set_drift(await self.drift.reports())
            if self.log is not None:
                self.metrics.log_written.set(self.log.written)
                self.metrics.log_pending.set(self.log.pending_count)
        return self.metrics.render()

    def _dropped(self, reason: str, count: int) -> None:
        self.metrics.log_dropped.labels(reason).inc(count)


def _image_answer(encoded: str) -> dict:
    return {"image_base64_chars": len(encoded)}  # the log keeps an image's size, not it
