"""API manager benchmarks (ratios against references measured in the same run).

- endpoint selection (filter + strategy) with 10, 100 and 1,000 endpoints, with an empty health
  window and with a full one, vs a plain sort of the same endpoints by priority (the floor);
- one call through the manager vs the same request made directly with httpx, both to the
  loopback fake provider.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.llm.endpoints import ApiEndpoint, EndpointPolicy, EndpointStore
from heablcoin_mcp.core.llm.manager import ApiManager
from heablcoin_mcp.core.storage import Database
from heablcoin_mcp.core.storage.consents import Consents
from tests.fakes.llm import fake_llms

ENV = {"BENCH_KEY": "sk-bench"}


def _manager(home: Path, count: int, url: str) -> ApiManager:
    db = Database(home / f"ai-{count}.db")
    db.migrate()
    store = EndpointStore(db, SystemClock(), Consents(db, SystemClock()),
                          EndpointPolicy(key_patterns=("BENCH_KEY",), allow_private=True))
    for i in range(count):
        endpoint = ApiEndpoint(name=f"e{i:04d}", base_url=url, model="m", api_key_env="BENCH_KEY",
                               priority=1 + i % 10, weight=1 + i % 3, max_requests_per_minute=100_000)
        store.add(endpoint, source="settings")
    return ApiManager(store, SystemClock(), ENV)


def _median(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _selection_after_a_call(manager: ApiManager) -> Callable[[], object]:
    """As in use: every selection follows a call, so one endpoint's health has changed."""
    healths = [manager.health(e) for e in manager.endpoints()]
    turn = itertools.count()

    def select() -> object:
        healths[next(turn) % len(healths)].record(True, 0.5)
        return manager.candidates("priority", 100)

    return select


def selection_rows(runs: int) -> list[tuple[str, float, str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as home:
        for count in (10, 100, 1000):
            manager = _manager(Path(home), count, "http://127.0.0.1:9/v1")
            endpoints = manager.endpoints()
            reference = _median(lambda endpoints=endpoints: sorted(endpoints, key=lambda e: (e.priority, e.name)),
                                runs * 20)
            for window in ("empty", "full"):
                if window == "full":  # every endpoint's health window full of recent traffic
                    calls = 10_000 if count <= 100 else 1_000
                    for endpoint in endpoints:
                        health = manager.health(endpoint)
                        for i in range(calls):
                            health.record(i % 7 != 0, 0.2 + (i % 50) / 10)
                label = "empty window" if window == "empty" else f"{calls:,} calls each in the window"
                for strategy in ("priority", "round_robin", "least_latency", "random"):
                    took = _median(lambda m=manager, s=strategy: m.candidates(s, 100), runs * 20)
                    rows.append((f"select {strategy}, {count} endpoints, {label}", took,
                                 "plain sort by priority", reference))
                took = _median(_selection_after_a_call(manager), runs * 20)
                rows.append((f"select priority after a call, {count} endpoints, {label}", took,
                             "plain sort by priority", reference))
    return rows


async def call_rows(runs: int) -> list[tuple[str, float, str, float]]:
    with fake_llms("bench") as (llm,), tempfile.TemporaryDirectory() as home:
        manager = _manager(Path(home), 1, llm.url)
        body = {"model": "m", "max_tokens": 64, "temperature": 0.3, "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient() as client:
            await manager.call("warm up", max_tokens=64)
            await client.post(f"{llm.url}/chat/completions", json=body, headers={"Authorization": "Bearer sk-bench"})
            ours, direct = [], []
            for _ in range(runs * 20):
                started = time.perf_counter()
                await manager.call("hi", max_tokens=64)
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                response = await client.post(f"{llm.url}/chat/completions", json=body,
                                             headers={"Authorization": "Bearer sk-bench"})
                response.json()
                direct.append(time.perf_counter() - started)
        await manager.close()
    return [("ask through the manager (loopback)", statistics.median(ours), "direct httpx call",
             statistics.median(direct))]
