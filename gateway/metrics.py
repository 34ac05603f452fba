"""The gateway's Prometheus metrics, served at ``GET /metrics`` (text format 0.0.4).

Every series is labelled only with values the gateway bounds itself, so a caller
cannot create series: ``route`` is the route's template (``/models/{name}/versions``,
or ``unmatched``), ``model`` / ``version`` are the served model version the request
was resolved to -- what its ``X-Model-Name`` / ``X-Model-Version`` headers say, errors
included; empty when none was, so ``?model=nosuch`` adds nothing -- and a model's
predicted classes are capped at ``MAX_CLASSES`` per model (the rest count as ``other``).

The request counter and latency histogram are taken by the request middleware
(``request_id.py``, around the whole app, errors included); the answer distribution
for single calls by the routes (``observe_answer``); batch sizes by the batch routes;
request-sharing group sizes by the coalescer.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Set, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .evaluation import PREDICTION_KEYS, SCORE_KEYS, normal
from .loop_metrics import LoopCollector, LoopCounter, LoopHistogram
from .request_context import SERVED

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"
MAX_CLASSES = 50
OTHER = "other"
# seconds: a cached single call answers in ~1-5 ms, a 100k-row batch in seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
ROW_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
SHARED_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # the request path's series: updated from the event loop only (loop_metrics.py)
        self.requests = LoopCounter(
            "mlplatform_gateway_requests", "Answered requests by route, model, version and "
            "HTTP status code.", ["route", "method", "model", "version", "code"])
        self.latency = LoopHistogram(
            "mlplatform_gateway_request_duration_seconds", "Time from the request's arrival "
            "to the end of its answer.", ["route", "model"], LATENCY_BUCKETS)
        self.batch_rows = LoopHistogram(
            "mlplatform_gateway_batch_rows", "Rows (or files) per batch request.",
            ["route", "model"], ROW_BUCKETS)
        self.shared = LoopHistogram(
            "mlplatform_gateway_shared_request_documents", "Documents per V2 request that "
            "concurrent single calls shared (1: a call went alone).", ["model"], SHARED_BUCKETS)
        self.scores = LoopHistogram(
            "mlplatform_gateway_prediction_score", "The score of single-call answers "
            "(e.g. fraud_probability), by model and version.", ["model", "version"],
            SCORE_BUCKETS)
        self.predictions = LoopCounter(
            "mlplatform_gateway_predictions", "Single-call answers by predicted class.",
            ["model", "version", "predicted"])
        self.registry.register(LoopCollector(self.requests, self.latency, self.batch_rows,
                                             self.shared, self.scores, self.predictions))
        self.jobs = Gauge(
            "mlplatform_gateway_jobs", "Batch jobs in the job database by state (read at "
            "each scrape).", ["state"], registry=self.registry)
        self.drift = Gauge(
            "mlplatform_gateway_input_drift_psi", "Population stability index of a feature "
            "over the window of live inputs against the version's training profile "
            "(< 0.1 stable, 0.1-0.2 watch, > 0.2 drift).", ["model", "version", "feature"],
            registry=self.registry)
        self.drift_inputs = Gauge(
            "mlplatform_gateway_input_drift_window_inputs", "Live inputs in the drift window "
            "of a model version.", ["model", "version"], registry=self.registry)
        self.log_dropped = Counter(
            "mlplatform_gateway_prediction_log_dropped", "Predictions the log did not write: "
            "reason=full (the writer fell behind), database (the write failed).", ["reason"],
            registry=self.registry)
        self.log_written = Gauge(
            "mlplatform_gateway_prediction_log_written", "Predictions written to the log since "
            "the gateway started.", registry=self.registry)
        self.log_pending = Gauge(
            "mlplatform_gateway_prediction_log_pending", "Predictions waiting to be written.",
            registry=self.registry)
        for reason in ("full", "database"):
            self.log_dropped.labels(reason)
        self.refusals = Counter(
            "mlplatform_gateway_deploy_refusals", "Versions a deploy, rollback or the alias "
            "follower did not serve: reason=integrity (a file differs from the version's "
            "manifest, or its signature fails), load (any other refusal).", ["model", "reason"],
            registry=self.registry)
        self._classes: Dict[str, Set[str]] = {}
        # model -> the answer keys its answers carry (found on the first answer)
        self._answer_keys: Dict[str, Tuple[Optional[str], Optional[str]]] = {}

    def refused(self, model: str, message: str) -> None:
        from mlplatform.pyfunc_models.integrity import MARKER

        self.refusals.labels(model, "integrity" if MARKER in message else "load").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def set_jobs(self, counts: Dict[str, int]) -> None:
        for state, count in counts.items():
            self.jobs.labels(state).set(count)

    def set_drift(self, reports) -> None:
        """The gauges of exactly the versions reported now (a retired version's go away)."""
        self.drift.clear()
        self.drift_inputs.clear()
        for report in reports:
            model, version = report["model"], report["version"]
            self.drift_inputs.labels(model, version).set(report["inputs"])
            for feature, found in report["features"].items():
                self.drift.labels(model, version, feature).set(found["psi"])

    def observe_answer(self, model: str, version: Optional[str], answer: Any) -> None:
        """The predicted class and score of one answer, when it has them."""
        if not isinstance(answer, dict):
            return
        version = version or ""
        keys = self._answer_keys.get(model)
        if keys is None or (keys[0] is not None and keys[0] not in answer):
            keys = self._answer_keys[model] = (
                next((k for k in PREDICTION_KEYS if k in answer), None),
                next((k for k in SCORE_KEYS if k in answer), None))
        predicted, score = keys
        if predicted is not None:
            self.predictions.inc((model, version, self._bounded(model, answer[predicted])))
        if score is not None:
            value = answer.get(score)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.scores.observe((model, version), value)

    def observe_rows(self, route: str, model: str, rows: int) -> None:
        self.batch_rows.observe((route, model), rows)

    def observe_shared(self, model: str, documents: int) -> None:
        self.shared.observe((model,), documents)

    def _bounded(self, model: str, value: Any) -> str:
        text = "1" if value is True else "0" if value is False else normal(value)
        seen = self._classes.setdefault(model, set())
        if text in seen:
            return text
        if len(seen) >= MAX_CLASSES or len(text) > 64:
            return OTHER
        seen.add(text)
        return text


def record_request(metrics: GatewayMetrics, scope, status: int, started: float) -> None:
    """One answered request: counted and timed by route template, method, model, version
    and status.  The model is the one the request was resolved to (``SERVED``, set by the
    model directory; the same that ``X-Model-Name`` names), empty if none."""
    route = scope.get("route")
    template = getattr(route, "path", None) or UNMATCHED
    model, version = SERVED.get() or ("", "")
    metrics.requests.inc((template, scope["method"], model, version, str(status)))
    metrics.latency.observe((template, model), time.perf_counter() - started)
