"""Health and budgets shared through Redis: what one process learns, every process acts on."""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from heablcoin_mcp.core.llm.endpoints import ApiEndpoint, EndpointPolicy, EndpointStore
from heablcoin_mcp.core.llm.health import EndpointHealth, HealthPolicy, TokenBucket
from heablcoin_mcp.core.llm.manager import ApiManager
from heablcoin_mcp.core.llm.shared import RedisHealth
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.errors import ProviderUnavailable
from tests.fakes.clock import ManualClock
from tests.fakes.llm import Behaviour, FakeLLM, fake_llms
from tests.services import REDIS_URL, redis_prefix

pytestmark = pytest.mark.anyio
KEYS = {"KEY_A": "sk-secret-aaaa-1111", "KEY_B": "sk-secret-bbbb-2222"}


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as value:
        yield value


@pytest.fixture
def llms() -> Iterator[list[FakeLLM]]:
    with fake_llms("a", "b") as servers:
        yield servers


@pytest.fixture
def store(storage: Storage, clock: ManualClock, llms: list[FakeLLM]) -> EndpointStore:
    endpoints = EndpointStore(storage, clock, Consents(storage, clock),
                              EndpointPolicy(key_patterns=("KEY_*",), allow_private=True))
    for llm, key, priority in ((llms[0], "KEY_A", 1), (llms[1], "KEY_B", 2)):
        endpoints.add(ApiEndpoint(name=llm.name, base_url=llm.url, model="m", api_key_env=key, priority=priority,
                                  max_requests_per_minute=2), source="settings")
    return endpoints


@pytest.fixture
async def two(store: EndpointStore, clock: ManualClock, prefix: str) -> AsyncIterator[list[ApiManager]]:
    """Two processes' managers: their own memory, one Redis."""

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    managers = [ApiManager(store, clock, KEYS, policy=HealthPolicy(cooldown=30), sleep=sleep, deadline=5,
                           rng=random.Random(n), shared=RedisHealth(REDIS_URL, prefix=prefix)) for n in range(2)]
    yield managers
    for manager in managers:
        await manager.close()
        manager.shared.close()


async def test_a_budget_is_spent_once_across_processes(two: list[ApiManager], llms: list[FakeLLM]) -> None:
    one, other = two
    assert (await one.call("hi", endpoint="a")).endpoint == "a"
    assert (await other.call("hi", endpoint="a")).endpoint == "a"
    with pytest.raises(ProviderUnavailable):  # a's 2 requests a minute are spent, by the two together
        await one.call("third", endpoint="a")
    assert len(llms[0].seen) == 2
    assert other.health(other.store.get("a")).status() == "RATE_LIMITED"


async def test_a_circuit_opened_by_one_process_is_open_for_the_other(two: list[ApiManager], llms: list[FakeLLM],
                                                                     clock: ManualClock) -> None:
    one, other = two
    a = llms[0]
    a.then(Behaviour(status=503), Behaviour(status=503))
    for _ in range(2):
        assert (await one.call("hi")).endpoint == "b"  # a fails, b answers
        clock.advance(60)  # budgets refill; faults in a row stay counted
    assert other.health(other.store.get("a")).consecutive_faults == 2
    a.then(Behaviour(status=503))
    await other.call("hi")  # the third fault, seen by the other process, opens a's circuit
    assert one.health(one.store.get("a")).status() == "FAILED"
    calls_to_a = len(a.seen)
    assert (await one.call("again")).endpoint == "b" and len(a.seen) == calls_to_a  # a is not called


def test_exactly_one_process_sends_the_half_open_probe(prefix: str, clock: ManualClock) -> None:
    policy = HealthPolicy(cooldown=30)

    def state() -> EndpointHealth:
        return EndpointHealth(policy, clock.now, TokenBucket(100, clock.now))

    stores = [RedisHealth(REDIS_URL, prefix=prefix) for _ in range(2)]
    opened = state()
    stores[0].change("a", opened, lambda h: h.faulted("auth", "401", 0.1, None))
    clock.advance(31)
    first, second = state(), state()
    assert stores[0].acquire("a", first, 1) is True  # the probe
    assert stores[1].acquire("a", second, 1) is False  # not a second one
    stores[0].change("a", first, lambda h: h.succeeded(0.2, 10))
    assert stores[1].acquire("a", second, 1) is True  # closed again
    for store in stores:
        store.close()


def test_racing_processes_take_exactly_the_budget(prefix: str, clock: ManualClock) -> None:
    """8 threads, each with a Redis client of its own, race for a budget of 50 requests."""
    taken: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        store = RedisHealth(REDIS_URL, prefix=prefix)
        for _ in range(20):
            health = EndpointHealth(HealthPolicy(), clock.now, TokenBucket(50, clock.now))
            got: Any = store.acquire("a", health, 1)
            with lock:
                taken.append(got)
        store.close()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(taken) == 160 and taken.count(True) == 50


async def test_the_server_reports_its_redis_and_never_its_password(tmp_path: Any, prefix: str) -> None:
    from mcp import Client

    from heablcoin_mcp.app import App
    from heablcoin_mcp.config import Settings
    from heablcoin_mcp.server import build_server

    async def redis_component(url: str) -> tuple[dict[str, Any], str]:
        settings = Settings(_env_file=None, home=tmp_path, exchange="sim", redis_url=url)  # type: ignore[call-arg]
        async with Client(build_server(App(settings))) as client:
            result = await client.call_tool("get_system_health", {})
        found = next(c for c in result.structured_content["components"] if c["name"] == "redis")
        return found, str(result.structured_content)

    reachable, _ = await redis_component(REDIS_URL)
    assert reachable["status"] == "ok" and reachable["metrics"]["latency_ms"] > 0
    refused, everything = await redis_component(REDIS_URL.replace("redis://", "redis://:hunter2-wrong@", 1))
    assert refused["status"] == "down" and "hunter2" not in everything  # this Redis has no password


def test_the_redis_script_decides_as_the_state_machine_does(prefix: str) -> None:
    """The Lua acquire against EndpointHealth.acquire over 3,000 random steps (takes of random
    sizes, faults of every kind, successes, time passing): the same verdict and the same budgets."""
    rng = random.Random(11)
    clock = ManualClock()
    policy = HealthPolicy(cooldown=5, failure_threshold=2, max_rate_limit_wait=20, probe_lease=30)

    def state() -> EndpointHealth:
        return EndpointHealth(policy, clock.now, TokenBucket(6, clock.now), TokenBucket(900, clock.now))

    local, shared, store = state(), state(), RedisHealth(REDIS_URL, prefix=prefix)
    for step in range(3_000):
        move = rng.random()
        if move < 0.5:
            wanted = rng.choice([1, 50, 300, 899, 901])
            assert store.acquire("a", shared, wanted) is local.acquire(wanted), step
        elif move < 0.65:
            kind, retry = rng.choice([("server_error", None), ("rate_limited", rng.choice([None, 3.0, 50.0])),
                                      ("auth", None), ("timeout", None)])
            for health in (local, shared):
                store.change("a", health, lambda h, k=kind, r=retry: h.faulted(k, k, 0.5, r)) if health is shared \
                    else health.faulted(kind, kind, 0.5, retry)
        elif move < 0.8:
            used = rng.randrange(0, 200)
            store.change("a", shared, lambda h, u=used: h.succeeded(0.3, u))
            local.succeeded(0.3, used)
        else:
            clock.advance(rng.choice([0.5, 2, 7, 31]))
        store.read("a", shared)
        assert (shared.open_until, shared.probe_started, shared.rate_limited_until) == (
            local.open_until, local.probe_started, local.rate_limited_until), step
        for mine, theirs in ((local.requests, shared.requests), (local.tokens, shared.tokens)):
            mine.available(0), theirs.available(0)  # both refilled to now (a refused take refills lazily)
            assert theirs.level == pytest.approx(mine.level, abs=1e-6), step
    store.close()
