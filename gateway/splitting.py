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
  ``SHADOW_MAX_IN_FLIGHT`` copies are already waiting or in flight, the copy is
  dropped (and counted) rather than queued.  Copies go to the shadow version in
  batches (see BATCH_WINDOW below).  ``--shadow ALIAS=PERCENT`` copies only that
  share of the calls: each copy is a second inference on the same machine.
  ``GET /models/<name>/shadow`` reports calls, agreement (same predicted class),
  mean and largest |delta probability|, and each side's p50/p99 latency.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Tuple

from mlplatform.pyfunc_models.conventions import CANARY, SHADOW, RouteRule

from .errors import ModelFailed
from .evaluation import PREDICTION_KEYS, SCORE_KEYS, normal

log = logging.getLogger("mlplatform.gateway")
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
    last_error: Optional[str] = None
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
            "last_error": self.last_error, "dropped": self.dropped,
            "agreement_rate": self.agreed / self.answered if self.answered else None,
            "mean_abs_probability_delta": self.delta_sum / self.deltas if self.deltas else None,
            "max_abs_probability_delta": self.delta_max if self.deltas else None,
            "served_latency_ms": _percentiles(self.served_seconds),
            "shadow_latency_ms": _percentiles(self.shadow_seconds),
        }


def _failed(batch: List[_Copy], exc: Exception) -> None:
    reason = str(getattr(exc, "detail", None) or exc or type(exc).__name__)[:300]
    for stats, _, _ in batch:
        stats.errors += 1
        stats.last_error = reason


def _percentiles(seconds: Deque[float]) -> Dict[str, Optional[float]]:
    ordered = sorted(seconds)
    if not ordered:
        return {"p50": None, "p99": None}
    return {"p50": 1000 * ordered[len(ordered) // 2],
            "p99": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


# Copies wait up to BATCH_WINDOW seconds and go to the shadow version together, up to
# BATCH_MAX per V2 request: most of MLServer's time per request is protocol work, and
# one copy per call cost 15-42 % of /forward throughput at concurrency 16 on 2 cores
# (bench/bench_shadow.py).  The caller never waits for a copy, so the window costs
# nobody anything.  A copy goes alone and is timed when none was for
# LATENCY_SAMPLE_INTERVAL seconds (all of them under 10 calls/s), so the shadow's
# latency percentiles compare with the served side's single calls.
BATCH_WINDOW = 0.05
BATCH_MAX = 256
LATENCY_SAMPLE_INTERVAL = 0.1

# ``documents -> answers`` on the shadow version, in one V2 request.
SendCopies = Callable[[List[Any]], Awaitable[List[Any]]]
_Copy = Tuple[ShadowStats, Any, Any]  # (its counts, the document, the served answer)


class Shadowing:
    """The shadow copies waiting or in flight and what they found, per model."""

    def __init__(self, max_in_flight: int,
                 latency_sample_interval: float = LATENCY_SAMPLE_INTERVAL):
        self.max_in_flight = max_in_flight
        self.latency_sample_interval = latency_sample_interval
        self.in_flight = 0
        self.stats: Dict[str, ShadowStats] = {}
        self._tasks: set = set()
        self._waiting: Dict[Tuple[str, str], Tuple[SendCopies, List[_Copy]]] = {}
        self._last_timed = float("-inf")

    def stats_of(self, name: str, rule: RouteRule) -> ShadowStats:
        found = self.stats.get(name)
        if found is None or found.rule != rule:  # a new rule starts a new count
            found = self.stats[name] = ShadowStats(rule)
        return found

    def send(self, name: str, rule: RouteRule, served_answer: Any, served_seconds: float,
             document: Any, send_copies: SendCopies) -> None:
        """Record the served call; copy ``document`` to the shadow version in the
        background unless too many copies are pending."""
        stats = self.stats_of(name, rule)
        if rule.percent < 100 and random.random() * 100 >= rule.percent:
            return  # sampled out: a copy costs a second inference on the same machine
        stats.calls += 1
        stats.served_seconds.append(served_seconds)
        if self.in_flight >= self.max_in_flight:
            stats.dropped += 1
            return
        self.in_flight += 1
        copy = (stats, document, served_answer)
        now = time.monotonic()
        if now - self._last_timed >= self.latency_sample_interval:
            self._last_timed = now
            self._start(self._copy([copy], send_copies, timed=True))
            return
        key = (name, rule.version)
        _, waiting = self._waiting.setdefault(key, (send_copies, []))
        waiting.append(copy)
        if len(waiting) >= BATCH_MAX:
            self._flush(key)
        elif len(waiting) == 1:
            asyncio.get_running_loop().call_later(BATCH_WINDOW, self._flush, key)

    def _flush(self, key: Tuple[str, str]) -> None:
        send_copies, batch = self._waiting.pop(key, (None, []))
        if batch:
            self._start(self._copy(batch, send_copies))

    def _start(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, batch: List[_Copy], send_copies: SendCopies,
                    timed: bool = False) -> None:
        started = time.perf_counter()
        answers, alone = None, False
        try:
            answers = await send_copies([document for _, document, _ in batch])
        except ModelFailed as exc:
            alone = len(batch) > 1  # one copy failed the shared call: each again, alone
            if not alone:
                _failed(batch, exc)  # the shadow's failure is data, never the caller's
        except Exception as exc:
            _failed(batch, exc)
        finally:  # cancelled too (the app stopping): the copies are no longer in flight
            if not alone:
                self.in_flight -= len(batch)
        if alone:  # each retried copy counts itself out
            await asyncio.gather(*(self._copy([one], send_copies) for one in batch))
            return
        if answers is None:
            return
        for (stats, _, served_answer), answer in zip(batch, answers):
            if timed:
                stats.shadow_seconds.append(time.perf_counter() - started)
            stats.answered += 1
            same, delta = compare(served_answer, answer)
            stats.agreed += same
            if delta is not None:
                stats.deltas += 1
                stats.delta_sum += delta
                stats.delta_max = max(stats.delta_max, delta)

    async def drain(self) -> None:
        for key in list(self._waiting):  # copies still in their window go now
            self._flush(key)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
