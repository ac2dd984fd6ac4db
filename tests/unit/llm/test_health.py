"""The health window: rolling aggregates that read like a full scan of the results."""

from __future__ import annotations

import random

from heablcoin_mcp.core.llm.health import BUCKETS, RollingWindow


def test_the_rolling_window_reads_what_a_full_scan_of_the_results_would() -> None:
    """The O(1) aggregates against the plain definition (every result of the window rescanned and
    sorted), over random traffic. A result ages out with its whole slice (a thirtieth of the window)."""
    rng = random.Random(7)
    window, limit = 300.0, 10.0
    rolling, results = RollingWindow(window, limit), []
    now = 0.0
    for _ in range(5_000):
        now += rng.expovariate(1 / rng.choice([0.2, 3, 40]))
        ok, latency = rng.random() > rng.choice([0.05, 0.5]), rng.choice([0.1, 2, 9.99, 10, 10.01, 30])
        rolling.record(now, ok, latency)
        results.append((now, ok, latency))
        width = window / BUCKETS
        recent = [r for r in results if r[0] - r[0] % width + width > now - window]
        successes = sorted(lat for _, good, lat in recent if good)
        p95_slow = bool(successes) and successes[int(0.95 * (len(successes) - 1))] > limit
        errors = sum(1 for _, good, _ in recent if not good)
        expected = len(recent) >= 5 and (errors / len(recent) > 0.3 or p95_slow)
        assert rolling.degraded(now, 5, 0.3) is expected, (now, len(recent))
