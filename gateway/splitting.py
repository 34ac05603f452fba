"""Canary and shadow: a second version beside the served one, per model.

The rule is a registered-model tag written by ``mlplatform route`` (which loads the
second version into MLServer first) and read with the model's registry record,
so it takes effect within ``REGISTRY_TTL`` seconds.  It applies to calls that name
the model alone (``NAME``); ``NAME@ALIAS`` and ``NAME/VERSION`` go where they say.

* **canary**: ``percent`` % of the calls go to the canary version.  With the
  ``CANARY_KEY_HEADER`` header (default ``X-Canary-Key``) the choice is a hash of
  its value, so one key always lands on the same side; without it, random.
* **shadow**: the served version answers; the same document is sent to the
  shadow version in the background, after the answer, and the two answers are
  compared.  The caller never waits for it and never sees its errors; when
  ``SHADOW_MAX_IN_FLIGHT`` copies are already pending, the copy is dropped (and
  counted) rather than queued.  ``--shadow ALIAS=PERCENT`` copies only that share
  of the calls: each copy is a second inference on the same machine (a full
  shadow cost 15-30 % of the throughput on 2 busy cores, docs/benchmarks.md).
  ``GET /models/<name>/shadow`` reports calls, agreement (same predicted class),
  mean and largest |delta probability|, and each side's p50/p99 latency.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Optional, Tuple

from mlplatform.pyfunc_models.conventions import CANARY, SHADOW, RouteRule

from .evaluation import PREDICTION_KEYS, SCORE_KEYS, normal

LATENCIES_KEPT = 10_000  # per side: the percentiles are over the latest calls


def canary_bucket(key: Optional[str]) -> float:
    """Where a call falls in [0, 100): from its key (sticky), else at random."""
    if not key:
        return random.random() * 100
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10_000 / 100


def takes_canary(rule: Optional[RouteRule], key: Optional[str]) -> bool:
    return rule is not None and rule.mode == CANARY and canary_bucket(key) < rule.percent


def compare(served: Any, shadow: Any) -> Tuple[bool, Optional[float]]:
    """Whether two answers agree (the same predicted class, or equal), and the
    difference of their probabilities when both have one."""
    if isinstance(served, dict) and isinstance(shadow, dict):
        key = next((k for k in PREDICTION_KEYS if k in served and k in shadow), None)
        score = next((k for k in SCORE_KEYS if k in served and k in shadow), None)
        delta = None
        if score is not None:
            try:
                delta = abs(float(served[score]) - float(shadow[score]))
            except (TypeError, ValueError):
                delta = None
        if key is not None:
            return normal(served[key]) == normal(shadow[key]), delta
        return served == shadow, delta
    return served == shadow, None


@dataclass
class ShadowStats:
    rule: RouteRule
    calls: int = 0
    answered: int = 0
    agreed: int = 0
    errors: int = 0
    dropped: int = 0
    deltas: int = 0
    delta_sum: float = 0.0
    delta_max: float = 0.0
    served_seconds: Deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))
    shadow_seconds: Deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    def report(self) -> Dict[str, Any]:
        return {
            "mode": SHADOW, "alias": self.rule.alias, "version": self.rule.version,
            "calls": self.calls, "answered": self.answered, "errors": self.errors,
            "dropped": self.dropped,
            "agreement_rate": self.agreed / self.answered if self.answered else None,
            "mean_abs_probability_delta": self.delta_sum / self.deltas if self.deltas else None,
            "max_abs_probability_delta": self.delta_max if self.deltas else None,
            "served_latency_ms": _percentiles(self.served_seconds),
            "shadow_latency_ms": _percentiles(self.shadow_seconds),
        }


def _percentiles(seconds: Deque[float]) -> Dict[str, Optional[float]]:
    ordered = sorted(seconds)
    if not ordered:
        return {"p50": None, "p99": None}
    return {"p50": 1000 * ordered[len(ordered) // 2],
            "p99": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


class Shadowing:
    """The shadow copies in flight and what they found, per model."""

    def __init__(self, max_in_flight: int):
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.stats: Dict[str, ShadowStats] = {}
        self._tasks: set = set()

    def stats_of(self, name: str, rule: RouteRule) -> ShadowStats:
        found = self.stats.get(name)
        if found is None or found.rule != rule:  # a new rule starts a new count
            found = self.stats[name] = ShadowStats(rule)
        return found

    def send(self, name: str, rule: RouteRule, served_answer: Any, served_seconds: float,
             call) -> None:
        """Record the served call; send the copy (``call()``: a coroutine giving the shadow's
        answer) in the background unless too many are pending."""
        stats = self.stats_of(name, rule)
        if rule.percent < 100 and random.random() * 100 >= rule.percent:
            return  # sampled out: a copy costs a second inference on the same machine
        stats.calls += 1
        stats.served_seconds.append(served_seconds)
        if self.in_flight >= self.max_in_flight:
            stats.dropped += 1
            return
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._copy(stats, served_answer, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, stats: ShadowStats, served_answer: Any, call) -> None:
        started = time.perf_counter()
        try:
            answer = await call()
        except Exception:  # the shadow's failure is data, never the caller's problem
            stats.errors += 1
            return
        finally:
            self.in_flight -= 1
        stats.shadow_seconds.append(time.perf_counter() - started)
        stats.answered += 1
        same, delta = compare(served_answer, answer)
        stats.agreed += same
        if delta is not None:
            stats.deltas += 1
            stats.delta_sum += delta
            stats.delta_max = max(stats.delta_max, delta)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
