"""Counters and histograms for the request path, updated from the event loop only.

prometheus_client's metrics take a lock and validate on every ``inc``/``observe``
(~1.5-3 us each, five per answered call); the gateway updates these from one thread,
the event loop, so plain dicts of label tuples do (~0.3 us).  They are exported in
the same text format through a collector registered beside the library's metrics.
Never update them from a worker thread.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Dict, Iterator, List, Sequence, Tuple

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily

Labels = Tuple[str, ...]


class LoopCounter:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]):
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.values: Dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        return family


class LoopHistogram:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float]):
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = list(buckets)
        # labels -> [count per bucket (the last: above every bound), sum]
        self.values: Dict[Labels, List] = {}

    def observe(self, labels: Labels, value: float) -> None:
        state = self.values.get(labels)
        if state is None:
            state = self.values[labels] = [[0] * (len(self.bounds) + 1), 0.0]
        state[0][bisect_left(self.bounds, value)] += 1  # the first bound >= value ("le")
        state[1] += value

    def cumulative(self, labels: Labels) -> List[Tuple[float, int]]:
        """(upper bound, observations at or below it), +Inf last."""
        counts, _ = self.values[labels]
        found, running = [], 0
        for bound, count in zip(self.bounds + [float("inf")], counts):
            running += count
            found.append((bound, running))
        return found

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels in list(self.values):
            buckets = [("+Inf" if bound == float("inf") else _text(bound), count)
                       for bound, count in self.cumulative(labels)]
            family.add_metric(list(labels), buckets, self.values[labels][1])
        return family


def _text(bound: float) -> str:
    return repr(float(bound))  # as prometheus_client writes bucket bounds: 0.1, 1.0


class LoopCollector:
    """What the registry asks at each scrape."""

    def __init__(self, *metrics):
        self.metrics = metrics

    def collect(self) -> Iterator:
        for metric in self.metrics:
            yield metric.family()
