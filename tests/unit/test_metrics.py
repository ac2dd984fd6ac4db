"""Our recording against prometheus_client's own Counter and Histogram fed the same observations."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from heablcoin_mcp.core.monitor.metrics import BUCKETS, Metrics


def parsed(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples
            if not s.name.endswith("_created")}


def test_recorded_figures_expose_as_prometheus_client_would() -> None:
    rng = random.Random(5)
    ours, registry = Metrics(), CollectorRegistry()
    seconds = Histogram("heablcoin_tool_call_seconds", "MCP tool call latency", ["tool"], buckets=BUCKETS,
                        registry=registry)
    calls = Counter("heablcoin_tool_calls", "x", ["tool", "outcome"], registry=registry)
    for _ in range(2_000):
        tool = rng.choice(["get_ticker", "place_order"])
        value = rng.choice([*BUCKETS, rng.expovariate(2), 0.0, 120.0])  # every bound exactly, too
        ours.observe("heablcoin_tool_call_seconds", value, tool)
        seconds.labels(tool).observe(value)
        outcome = rng.choice(["ok", "not_found", "risk_rejected"])
        ours.count("heablcoin_tool_calls", tool, outcome)
        calls.labels(tool, outcome).inc()
    mine = parsed(ours.exposition()[0])
    reference = parsed(generate_latest(registry))
    assert {k: v for k, v in mine.items() if k[0].startswith("heablcoin_tool_call")} == reference


def test_a_failing_gauge_source_does_not_empty_the_scrape() -> None:
    metrics = Metrics()

    def broken() -> list[tuple[str, str, tuple[str, ...], dict[tuple[str, ...], float]]]:
        raise ConnectionError("database gone")

    metrics.add_gauges(broken)
    metrics.add_gauges(lambda: [("heablcoin_database_up", "up", ("engine",), {("sqlite",): 1.0})])
    metrics.count("heablcoin_orders", "paper", "filled")
    found = parsed(metrics.exposition()[0])
    assert found[("heablcoin_database_up", (("engine", "sqlite"),))] == 1
    assert found[("heablcoin_orders_total", (("mode", "paper"), ("outcome", "filled")))] == 1
