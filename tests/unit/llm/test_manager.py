from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from heablcoin_mcp.core.llm.endpoints import ApiEndpoint, EndpointPolicy, EndpointStore
from heablcoin_mcp.core.llm.health import HealthPolicy
from heablcoin_mcp.core.llm.manager import ApiManager
from heablcoin_mcp.core.llm.shared import HealthStore, LocalHealth, RedisHealth
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.errors import InvalidInput, NotFound, ProviderUnavailable
from tests.fakes.clock import ManualClock
from tests.fakes.llm import Behaviour, FakeLLM, fake_llms
from tests.services import REDIS_URL, redis_prefix

# The API-manager contract: every test with health and budgets in this process and in Redis.
pytestmark = pytest.mark.anyio
KEYS = {"KEY_A": "sk-secret-aaaa-1111", "KEY_B": "sk-secret-bbbb-2222", "KEY_C": "sk-secret-cccc-3333"}


@pytest.fixture
def llms() -> Iterator[list[FakeLLM]]:
    with fake_llms("a", "b", "c") as servers:
        yield servers


@pytest.fixture
def store(storage: Storage, clock: ManualClock) -> EndpointStore:
    db = storage
    return EndpointStore(db, clock, Consents(db, clock), EndpointPolicy(key_patterns=("KEY_*",), allow_private=True))


@pytest.fixture(params=["memory", "redis"])
def shared(request: pytest.FixtureRequest) -> Iterator[HealthStore]:
    if request.param == "memory":
        yield LocalHealth()
        return
    with redis_prefix() as prefix:
        store = RedisHealth(REDIS_URL, prefix=prefix)
        yield store
        store.close()


@pytest.fixture
async def m(store: EndpointStore, clock: ManualClock, shared: HealthStore) -> AsyncIterator[ApiManager]:
    async def sleep(seconds: float) -> None:  # time passes without waiting
        clock.advance(seconds)

    created = ApiManager(store, clock, KEYS, policy=HealthPolicy(cooldown=30), sleep=sleep, rng=random.Random(1),
                         shared=shared)
    yield created
    await created.close()


def add(store: EndpointStore, llm: FakeLLM, key: str, **kwargs: Any) -> ApiEndpoint:
    endpoint = ApiEndpoint(name=llm.name, base_url=llm.url, model=f"model-{llm.name}", api_key_env=key, **kwargs)
    return store.add(endpoint, source="settings")


async def test_priority_uses_the_first_and_fails_over_on_a_server_error(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1)
    add(store, b, "KEY_B", priority=2)
    assert (await m.call("hi")).endpoint == "a"
    a.then(Behaviour(status=503))
    reply = await m.call("hi again")
    assert reply.endpoint == "b" and [(x.endpoint, x.status) for x in reply.attempts] == [("a", 503)]
    assert a.seen[-1].headers["authorization"] == "Bearer sk-secret-aaaa-1111"
    assert b.seen[-1].body["messages"] == [{"role": "user", "content": "hi again"}]


async def test_round_robin_rotates(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    for llm, key in zip(llms, KEYS, strict=True):
        add(store, llm, key)
    used = [(await m.call("x", strategy="round_robin")).endpoint for _ in range(6)]
    assert sorted(used[:3]) == ["a", "b", "c"] and used[3:] == used[:3]


async def test_least_latency_tries_untried_first_then_the_fastest(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A")
    add(store, b, "KEY_B")
    m.counters("a").latencies.extend([0.5, 0.7])  # a has been slow; b never tried
    assert (await m.call("x", strategy="least_latency")).endpoint == "b"
    m.counters("b").latencies.extend([0.9, 0.9, 0.9])
    assert (await m.call("x", strategy="least_latency")).endpoint == "a"


async def test_random_follows_the_weights(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", weight=9)
    add(store, b, "KEY_B", weight=1)
    firsts = [m.candidates("random", 10)[0].name for _ in range(400)]
    assert 0.82 < firsts.count("a") / len(firsts) < 0.97


async def test_the_circuit_opens_after_consecutive_faults_and_a_probe_closes_it(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1)
    add(store, b, "KEY_B", priority=2)
    a.then(*[Behaviour(status=500)] * 3)
    for _ in range(3):
        assert (await m.call("x")).endpoint == "b"
    assert m.health(store.get("a")).status() == "FAILED"
    assert (await m.call("x")).endpoint == "b" and len(a.seen) == 3  # open: a is not called
    clock.advance(31)  # cooldown over: one half-open probe
    a.then(Behaviour(status=500))
    assert (await m.call("x")).endpoint == "b" and len(a.seen) == 4
    assert "60 s" in m.health(store.get("a")).reason  # the cooldown doubled on the second trip
    clock.advance(61)
    assert (await m.call("x")).endpoint == "a"  # the probe succeeded
    assert m.health(store.get("a")).status() == "DEGRADED"  # closed, but 4 of its last 5 calls failed
    clock.advance(301)  # the window forgets them
    assert m.health(store.get("a")).status() == "ACTIVE"


async def test_auth_failure_opens_the_circuit_at_once_with_a_hint(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1)
    add(store, b, "KEY_B", priority=2)
    a.then(Behaviour(status=401))
    assert (await m.call("x")).endpoint == "b"
    assert m.health(store.get("a")).status() == "FAILED"
    assert "environment variable" in m.health(store.get("a")).reason


async def test_a_429_respects_retry_after_and_waits_within_the_deadline(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a = llms[0]
    add(store, a, "KEY_A")
    a.then(Behaviour(status=429, retry_after=7))
    started = clock.monotonic()
    reply = await m.call("x", deadline=30)
    assert reply.endpoint == "a" and reply.attempts[0].kind == "rate_limited"
    assert clock.monotonic() - started >= 7  # it waited for Retry-After instead of hammering
    a.then(Behaviour(status=429, retry_after=120))
    with pytest.raises(ProviderUnavailable) as caught:
        await m.call("x", deadline=30)
    assert caught.value.details["attempts"][0]["kind"] == "rate_limited"


async def test_a_callers_bad_request_stops_without_hurting_the_endpoint(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1)
    add(store, b, "KEY_B", priority=2)
    a.then(*[Behaviour(status=400)] * 5)
    for _ in range(5):
        with pytest.raises(InvalidInput):
            await m.call("x")
    assert len(b.seen) == 0 and m.health(store.get("a")).status() == "ACTIVE"


@pytest.mark.parametrize("behaviour", [Behaviour(malformed=True), Behaviour(stall=1.5)])
async def test_timeouts_and_malformed_answers_fail_over(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM], behaviour: Behaviour
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1, timeout=0.5)
    add(store, b, "KEY_B", priority=2)
    a.then(behaviour)
    reply = await m.call("x")
    assert reply.endpoint == "b" and reply.attempts[0].kind in ("bad_response", "timeout")


async def test_every_attempt_is_reported_and_no_key_is_ever_shown(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM], caplog: pytest.LogCaptureFixture
) -> None:
    for llm, key in zip(llms, KEYS, strict=True):
        add(store, llm, key)
        llm.then(*[Behaviour(status=502)] * 20)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderUnavailable) as caught:
        await m.call("x", deadline=5)
    attempts = caught.value.details["attempts"]
    assert {a["endpoint"] for a in attempts} == {"a", "b", "c"} and all(a["status"] == 502 for a in attempts)
    everything = str(caught.value.to_dict()) + caplog.text + str([s.model_dump() for s in m.stats()])
    assert not any(secret in everything for secret in KEYS.values())


async def test_local_rate_budget_limits_requests(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1, max_requests_per_minute=2)
    add(store, b, "KEY_B", priority=2)
    used = [(await m.call("x")).endpoint for _ in range(3)]
    assert used == ["a", "a", "b"]
    assert m.health(store.get("a")).status() == "RATE_LIMITED"
    clock.advance(30)  # half a minute refills one request
    assert (await m.call("x")).endpoint == "a"


async def test_provider_rate_headers_reconcile_the_budget(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1, max_requests_per_minute=100)
    add(store, b, "KEY_B", priority=2)
    a.then(Behaviour(headers={"x-ratelimit-remaining-requests": "0"}))
    assert (await m.call("x")).endpoint == "a"
    assert (await m.call("x")).endpoint == "b"  # the provider said a has nothing left


async def test_anthropic_messages_are_spoken_and_normalised(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a = llms[0]
    add(store, a, "KEY_A", provider="anthropic")
    reply = await m.call("hello", system="be brief")
    seen = a.seen[-1]
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == KEYS["KEY_A"]
    assert seen.headers["anthropic-version"] and seen.body["system"] == "be brief"
    assert reply.text == "answer from a" and reply.usage.total_tokens == 18 and reply.provider == "anthropic"


async def test_concurrent_calls_keep_counts_consistent(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    for llm, key in zip(llms, KEYS, strict=True):
        add(store, llm, key, max_requests_per_minute=1000)
    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(
                m.call,
                "x",
            )
    stats = {s.name: s for s in m.stats()}
    assert sum(s.requests for s in stats.values()) == 30 == sum(s.successes for s in stats.values())
    assert all(s.in_flight == 0 for s in stats.values())


async def test_changes_apply_without_a_restart(
    store: EndpointStore, m: ApiManager, clock: ManualClock, llms: list[FakeLLM]
) -> None:
    a, b, _ = llms
    add(store, a, "KEY_A", priority=1)
    add(store, b, "KEY_B", priority=2)
    assert (await m.call("x")).endpoint == "a"
    store.update("a", enabled=False)
    assert (await m.call("x")).endpoint == "b"
    store.remove("b")
    with pytest.raises(NotFound):
        await m.call("x")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_url": "ftp://x"}, "must be an http"),
        ({"base_url": "https://user:pw@x.com/v1"}, "credentials"),
        ({"api_key_env": "sk-live-abcdef"}, "NAME of an environment variable"),
        ({"priority": 0}, "priority"),
        ({"max_requests_per_minute": -5}, "max_requests_per_minute"),
        ({"name": "bad name!"}, "endpoint name"),
    ],
)
def test_bad_endpoints_are_refused(store: EndpointStore, changes: dict[str, Any], message: str) -> None:
    endpoint = ApiEndpoint(name="x", base_url="https://api.example.com/v1", model="m", api_key_env="KEY_A")
    with pytest.raises(InvalidInput, match=message):
        store.add(endpoint.model_copy(update=changes), source="settings")


def test_duplicate_names_are_refused(store: EndpointStore) -> None:
    endpoint = ApiEndpoint(name="x", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="KEY_A")
    store.add(endpoint, source="settings")
    with pytest.raises(InvalidInput, match="already exists"):
        store.add(endpoint, source="settings")


def test_kept_selection_answers_equal_a_fresh_reading(store: EndpointStore, clock: ManualClock) -> None:
    """Selection keeps each endpoint's answer until something is recorded on it or time alone may
    change it. Over random traffic, faults, 429s, probes and time passing, what it picks must be what
    reading every endpoint afresh (``usable`` and ``status``) gives."""
    rng = random.Random(11)
    manager = ApiManager(store, clock, {"KEY_A": "k"}, policy=HealthPolicy(cooldown=30, window=120),
                         shared=LocalHealth())
    for i in range(6):
        store.add(ApiEndpoint(name=f"e{i}", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="KEY_A",
                              priority=1 + i % 3, max_requests_per_minute=2 + i,
                              max_tokens_per_minute=3000 if i % 2 else None), source="settings")
    endpoints = manager.endpoints()
    seen_changes = 0
    for step in range(3_000):
        health = manager.health(rng.choice(endpoints))
        event = rng.random()
        if event < 0.3:
            clock.advance(rng.choice([0.01, 0.5, 3, 31, 130]))
        elif event < 0.5:
            health.acquire(100)
        elif event < 0.7:
            health.succeeded(rng.choice([0.2, 12.0]), rng.choice([10, 900]))
        elif event < 0.8:
            health.record(rng.random() < 0.4, 0.3)
        else:
            kind = rng.choice(["server_error", "server_error", "rate_limited", "auth"])
            health.faulted(kind, "boom", 0.5, rng.choice([None, 2.0, 45.0]))
        tokens = rng.choice([100, 100, 100, 2500])
        healthy, degraded = [], []
        for e in sorted(endpoints, key=lambda e: (e.priority, e.name)):
            h = manager.health(e)
            if h.usable(tokens):
                (degraded if h.status() == "DEGRADED" else healthy).append(e.name)
        picked = [e.name for e in manager.candidates("priority", tokens)]
        assert picked == healthy + degraded, step
        seen_changes += picked != [e.name for e in endpoints]
    assert seen_changes > 500  # the traffic did make endpoints unusable or degraded, often
