"""The web page's live view per model: requests per second, p50/p99 latency and error
rate over the last ``SPAN`` seconds, read from the gateway's own Prometheus series.

No per-request work: when asked (``GET /monitoring/live``), the request counter and
latency histogram are snapshotted (at most once a second) and compared with the
snapshot closest to ``SPAN`` seconds ago -- Prometheus's ``rate`` and
``histogram_quantile`` over the same counters, without a Prometheus.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

SPAN = 30.0
KEEP = 120.0
Snapshot = Dict[str, Dict[str, Any]]  # model -> {"requests", "errors", "buckets": {le: n}}


class LiveView:
    def __init__(self, metrics: Any):
        self.metrics = metrics
        self.snapshots: Deque[Tuple[float, Snapshot]] = deque([(time.monotonic(), {})])

    def summary(self) -> Dict[str, Any]:
        now, latest = time.monotonic(), self._snapshot()
        then, before = self._baseline(now)
        if now - self.snapshots[-1][0] >= 1.0:  # kept as a later baseline
            self.snapshots.append((now, latest))
        while len(self.snapshots) > 2 and now - self.snapshots[1][0] >= KEEP:
            self.snapshots.popleft()
        latest_time = now
        seconds = max(latest_time - then, 1e-9)
        models = {}
        for model, current in sorted(latest.items()):
            past = before.get(model, {"requests": 0, "errors": 0, "buckets": {}})
            requests = current["requests"] - past["requests"]
            errors = current["errors"] - past["errors"]
            buckets = {le: n - past["buckets"].get(le, 0) for le, n in current["buckets"].items()}
            models[model] = {
                "requests_per_second": round(requests / seconds, 3),
                "p50_ms": _quantile(0.5, buckets), "p99_ms": _quantile(0.99, buckets),
                "error_rate": round(errors / requests, 4) if requests else 0.0,
                "requests": int(requests)}
        return {"seconds": round(seconds, 1), "models": models}

    def _baseline(self, now: float) -> Tuple[float, Snapshot]:
        for moment, snapshot in self.snapshots:  # oldest first: the first within SPAN
            if now - moment <= SPAN:
                return moment, snapshot
        return self.snapshots[0]

    def _snapshot(self) -> Snapshot:
        found: Snapshot = {}
        for labels, value in list(self.metrics.requests.values.items()):
            model, code = labels[2], labels[4]
            if model:
                entry = found.setdefault(model, {"requests": 0, "errors": 0, "buckets": {}})
                entry["requests"] += value
                if code.startswith("5"):
                    entry["errors"] += value
        latency = self.metrics.latency
        for labels in list(latency.values):
            entry = found.get(labels[1])
            if entry is not None:
                for bound, count in latency.cumulative(labels):
                    entry["buckets"][bound] = entry["buckets"].get(bound, 0) + count
        return found


def _quantile(q: float, buckets: Dict[float, float]) -> Optional[float]:
    """Prometheus's histogram_quantile: linear inside the bucket, in milliseconds."""
    bounds: List[Tuple[float, float]] = sorted(buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if upper == float("inf"):
                return round(lower * 1000, 2)
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (upper - lower) * share) * 1000, 2)
        lower, below = upper, count
    return round(lower * 1000, 2)
