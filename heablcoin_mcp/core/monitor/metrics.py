"""Operating figures for Prometheus: tool calls, tasks, claims, orders, exchange requests, and at
scrape time the queue depth and the AI endpoints' health and budgets.

Recording is a dictionary update (no library on the call path); ``prometheus_client`` is imported
only when the figures are exposed (``/metrics``, ``worker --metrics-port``), so start-up does not
pay for it. One ``Metrics`` per App, no process-global registry.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# seconds: from a cached read to a slow exchange or model call
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


@dataclass(frozen=True)
class Family:
    """A metric as the collector exposes it."""

    name: str
    help: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    samples: dict[tuple[str, ...], Any]  # labels -> value (histogram: _Histogram)


# What is read at scrape time: a callable returning (name, help, labels, {label values: value}).
GaugeSource = Callable[[], Iterable[tuple[str, str, tuple[str, ...], dict[tuple[str, ...], float]]]]


# name: (kind, help, labels)
SPECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "heablcoin_tool_calls": ("counter", "MCP tool calls by tool and outcome (ok or the error code)",
                             ("tool", "outcome")),
    "heablcoin_tool_call_seconds": ("histogram", "MCP tool call latency", ("tool",)),
    "heablcoin_task_runs": ("counter", "task runs by task name and outcome", ("task", "outcome")),
    "heablcoin_task_run_seconds": ("histogram", "task handler run time", ("task",)),
    "heablcoin_task_claim_seconds": ("histogram", "time to claim the next task (the claim transaction)", ()),
    "heablcoin_orders": ("counter", "orders by mode and outcome", ("mode", "outcome")),
    "heablcoin_exchange_requests": ("counter", "exchange requests by exchange and outcome",
                                    ("exchange", "outcome")),
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, dict[tuple[str, ...], _Histogram]] = defaultdict(lambda: defaultdict(_Histogram))
        self._gauges: list[GaugeSource] = []

    def count(self, name: str, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._counters[name][labels] += amount

    def observe(self, name: str, seconds: float, *labels: str) -> None:
        with self._lock:
            self._histograms[name][labels].observe(seconds)

    def add_gauges(self, source: GaugeSource) -> None:
        self._gauges.append(source)

    def families(self) -> list[Family]:
        """Everything recorded so far plus the scrape-time gauges (a failing source is skipped)."""
        with self._lock:
            found = [Family(name, help_, kind, labels, dict(
                self._histograms[name] if kind == "histogram" else self._counters[name]))
                for name, (kind, help_, labels) in SPECS.items()]
        for source in self._gauges:
            try:
                found += [Family(name, help_, "gauge", labels, samples) for name, help_, labels, samples in source()]
            except Exception:  # one unreachable backend must not empty the scrape
                continue
        return found

    def registry(self) -> Any:
        """A prometheus_client registry that reads these figures at every scrape."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return registry

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        from prometheus_client import generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return generate_latest(self.registry()), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        for family in self.metrics.families():
            labels = list(family.labels)
            if family.kind == "counter":
                metric: Any = CounterMetricFamily(family.name, family.help, labels=labels)
                for values, amount in family.samples.items():
                    metric.add_metric(list(values), amount)
            elif family.kind == "gauge":
                metric = GaugeMetricFamily(family.name, family.help, labels=labels)
                for values, amount in family.samples.items():
                    metric.add_metric(list(values), amount)
            else:
                metric = HistogramMetricFamily(family.name, family.help, labels=labels)
                for values, histogram in family.samples.items():
                    cumulative, buckets = 0, []
                    for bound, count in zip((*map(str, BUCKETS), "+Inf"), histogram.counts, strict=True):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    metric.add_metric(list(values), buckets, histogram.total)
            yield metric

    def describe(self) -> Iterable[Any]:
        return []
