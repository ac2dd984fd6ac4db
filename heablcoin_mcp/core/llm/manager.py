"""ApiManager: pick an endpoint, call it, fail over on the endpoint's faults, within a deadline.

- Filter: enabled, key variable set, circuit not open (or due a half-open probe), not rate limited,
  request/token budget available. Then order by the strategy: ``priority`` (1 first),
  ``round_robin`` (a rotation that advances every call), ``least_latency`` (mean latency of recent
  successes; untried endpoints first), ``random`` (weighted by weight). DEGRADED endpoints come
  after healthy ones in every strategy.
- A fault moves on to the next endpoint at once. When every endpoint has been tried, wait for the
  earliest one to become usable again — Retry-After, cooldown, budget refill, and exponential
  backoff with jitter before retrying the same endpoint — but never past the deadline.
- A caller's bad request (4xx other than 401/403/408/429) stops at once and does not count against
  the endpoint. Errors list every attempt (endpoint, status, reason), never a key.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.llm.endpoints import ApiEndpoint, EndpointStore
from heablcoin_mcp.core.llm.health import EndpointHealth, HealthPolicy, TokenBucket
from heablcoin_mcp.core.llm.providers import MAX_ERROR_CHARS, CallFailed, Usage, complete
from heablcoin_mcp.core.llm.shared import HealthStore, LocalHealth
from heablcoin_mcp.core.monitor.health import ComponentHealth
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.errors import InvalidInput, NotFound, ProviderUnavailable

log = logging.getLogger(__name__)
Strategy = Literal["priority", "round_robin", "least_latency", "random"]
STRATEGIES = ("priority", "round_robin", "least_latency", "random")
MAX_ATTEMPTS = 8
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
LATENCY_SAMPLES = 200
UNASKED = (False, False, -math.inf)  # run out already: asked at once


class Attempt(BaseModel):
    endpoint: str
    status: int | None = None
    kind: str
    reason: str


class AiReply(BaseModel):
    text: str
    model: str
    usage: Usage
    endpoint: str
    provider: str
    latency_ms: float
    strategy: str
    attempts: list[Attempt] = Field(description="failed attempts before the one that answered")


class EndpointStats(BaseModel):
    name: str
    provider: str
    model: str
    enabled: bool
    key_set: bool = Field(description="whether the api_key_env variable is set (its value is never shown)")
    status: str
    reason: str
    requests: int
    successes: int
    failures: dict[str, int]
    success_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    in_flight: int
    tokens_used: int
    requests_budget: str = Field(description="requests available now / per minute")
    tokens_budget: str | None
    last_error: str | None
    last_success_at: float | None
    last_failure_at: float | None


@dataclass
class _Counters:
    requests: int = 0
    successes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    latency_total: float = 0.0  # of ``latencies``, kept as they come and go: the mean costs O(1)
    in_flight: int = 0
    tokens_used: int = 0
    last_error: str | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None


    def add_latency(self, seconds: float) -> None:
        if len(self.latencies) == self.latencies.maxlen:
            self.latency_total -= self.latencies[0]
        self.latencies.append(seconds)
        self.latency_total += seconds

    def mean_latency(self) -> float:
        return self.latency_total / len(self.latencies) if self.latencies else -1.0  # untried first


@dataclass
class _Routes:
    """What selection keeps between calls (see ``ApiManager._usable``)."""

    endpoints: list[ApiEndpoint]  # the store's list these were built from
    entries: list[tuple[ApiEndpoint, EndpointHealth]]
    versions: list[int]  # each health's version when its answer was taken (-1: never)
    answers: list[tuple[bool, bool, float]] = field(default_factory=list)  # usable, later, until
    tokens: int = -1
    until: float = -math.inf
    pool: list[ApiEndpoint] = field(default_factory=list)
    later: frozenset[str] = frozenset()


class ApiManager:
    def __init__(self, store: EndpointStore, clock: Clock, environ: Mapping[str, str], *,
                 policy: HealthPolicy | None = None, deadline: float = 60.0, redactor: Redactor | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = anyio.sleep, rng: random.Random | None = None,
                 shared: HealthStore | None = None) -> None:
        self.store, self.clock, self.environ = store, clock, environ
        self.shared = shared or LocalHealth()
        # shared state is timed by the wall clock every host agrees on
        self._now = clock.now if self.shared.shared else clock.monotonic
        self.redactor = redactor or Redactor(environ)  # providers may echo a key back: never pass it on
        self.policy = policy or HealthPolicy()
        self.deadline = deadline
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._health: dict[str, EndpointHealth] = {}
        self._counters: dict[str, _Counters] = {}
        self._rotation = 0
        self._client: Any = None
        self._endpoints: list[ApiEndpoint] = []
        self._version = -1
        self._routing: _Routes | None = None

    # --- endpoints and their state -------------------------------------------------------------

    def endpoints(self) -> list[ApiEndpoint]:
        if self._version != self.store.version:
            self._endpoints = self.store.all()
            self._version = self.store.version
        return self._endpoints

    def health(self, endpoint: ApiEndpoint) -> EndpointHealth:
        state = self._health.get(endpoint.name)
        tokens = endpoint.max_tokens_per_minute
        if (state is None or state.requests.capacity != endpoint.max_requests_per_minute
                or (state.tokens.capacity if state.tokens else None) != tokens):
            previous = state
            state = EndpointHealth(self.policy, self._now, TokenBucket(endpoint.max_requests_per_minute, self._now),
                                   TokenBucket(tokens, self._now) if tokens else None)
            if previous is not None:  # a limit changed: keep the circuit, renew the budgets
                state.consecutive_faults, state.trips, state.open_until = (previous.consecutive_faults,
                                                                           previous.trips, previous.open_until)
                state.rate_limited_until, state.reason, state.results = (previous.rate_limited_until,
                                                                         previous.reason, previous.results)
            self._health[endpoint.name] = state
        self.shared.read(endpoint.name, state)
        return state

    def counters(self, name: str) -> _Counters:
        found = self._counters.get(name)
        if found is None:
            found = self._counters[name] = _Counters()
        return found

    def key_set(self, endpoint: ApiEndpoint) -> bool:
        return bool(self.environ.get(endpoint.api_key_env))

    # --- selection -----------------------------------------------------------------------------

    def candidates(self, strategy: str, tokens: int, only: str | None = None,
                   skip: set[str] | frozenset[str] = frozenset()) -> list[ApiEndpoint]:
        """Usable endpoints in the order the strategy would try them."""
        if strategy not in STRATEGIES:
            raise InvalidInput(f"unknown strategy {strategy!r}", hint=f"Use one of: {', '.join(STRATEGIES)}.")
        pool, later = self._usable(tokens)
        if only is not None or skip:
            pool = [e for e in pool if e.name not in skip and (only is None or e.name == only)]
        if strategy == "round_robin" and pool:
            shift = self._rotation % len(pool)
            pool = pool[shift:] + pool[:shift]
        elif strategy == "least_latency":  # stable: (priority, name) among equal latencies
            pool = sorted(pool, key=lambda e: self.counters(e.name).mean_latency())
        elif strategy == "random":
            pool = self._weighted_shuffle(pool)
        # DEGRADED after the rest; a FAILED endpoint due its half-open probe keeps its place, so a
        # recovered first choice is found again. The strategy's order holds within each group.
        if not later:
            return list(pool)
        return [e for e in pool if e.name not in later] + [e for e in pool if e.name in later]

    def _usable(self, tokens: int) -> tuple[list[ApiEndpoint], frozenset[str]]:
        """The usable endpoints in (priority, name) order and the DEGRADED ones among them.

        Selection runs for every endpoint on every call, so answers are kept: an endpoint's health
        is asked again only when something was recorded on it (its version moved) or its answer's
        time ran out (see ``EndpointHealth.selection``). Shared health is read from the store first,
        since another process may have changed it."""
        routes = self._routes()
        if self.shared.shared:
            for e, h in routes.entries:
                self.shared.read(e.name, h)
        now = self._now()
        versions = [h.version for _, h in routes.entries]
        if routes.tokens == tokens and now < routes.until and versions == routes.versions:
            return routes.pool, routes.later
        if routes.tokens != tokens:
            routes.answers = [UNASKED] * len(routes.entries)
        for i, (_, h) in enumerate(routes.entries):
            if versions[i] != routes.versions[i] or now >= routes.answers[i][2]:
                routes.answers[i] = h.selection(tokens, now)
        usable = [(e, later) for (e, _), (ok, later, _) in zip(routes.entries, routes.answers, strict=True) if ok]
        routes.pool = [e for e, _ in usable]
        routes.later = frozenset(e.name for e, later in usable if later)
        routes.until = min((until for *_, until in routes.answers), default=math.inf)
        routes.tokens, routes.versions = tokens, versions
        return routes.pool, routes.later

    def _routes(self) -> _Routes:
        """The endpoints that may be selected at all (enabled, key variable set) in (priority, name)
        order, built again when the endpoints change (keys are looked up then)."""
        endpoints = self.endpoints()
        if self._routing is None or self._routing.endpoints is not endpoints:
            routable = sorted((e for e in endpoints if e.enabled and self.key_set(e)),
                              key=lambda e: (e.priority, e.name))
            self._routing = _Routes(endpoints, [(e, self.health(e)) for e in routable], versions=[-1] * len(routable))
        return self._routing

    def _weighted_shuffle(self, pool: list[ApiEndpoint]) -> list[ApiEndpoint]:
        """A random order where heavier endpoints tend to come first: each draws u^(1/weight) and the
        largest goes first (Efraimidis-Spirakis), so the first pick is weighted and it costs a sort."""
        return sorted(pool, key=lambda e: self.rng.random() ** (1.0 / e.weight), reverse=True)

    # --- the call path -------------------------------------------------------------------------

    async def call(self, prompt: str, *, system: str | None = None, strategy: str = "priority",
                   endpoint: str | None = None, max_tokens: int = 1024, temperature: float = 0.3,
                   deadline: float | None = None) -> AiReply:
        """Raises InvalidInput (bad request or arguments), NotFound (unknown endpoint),
        ProviderUnavailable (every attempt failed or nothing recovered before the deadline)."""
        if not prompt.strip():
            raise InvalidInput("prompt is empty")
        if not 1 <= max_tokens <= 32_000 or not 0 <= temperature <= 2:
            raise InvalidInput("max_tokens must be 1-32000 and temperature 0-2")
        configured = [e for e in self.endpoints() if endpoint is None or e.name == endpoint]
        if endpoint is not None and not configured:
            self.store.get(endpoint)  # raises NotFound naming the endpoints
        if not any(e.enabled for e in configured):
            raise NotFound("no enabled AI endpoint", hint="Add one with add_api_endpoint (or enable one).")
        if not any(self.key_set(e) for e in configured if e.enabled):
            names = ", ".join(sorted({e.api_key_env for e in configured if e.enabled}))
            raise ProviderUnavailable("no enabled endpoint has its key variable set", retryable=False,
                                      hint=f"Set {names} in the server's environment or .env and restart.")
        budget = max_tokens + len(prompt) // 4 + len(system or "") // 4
        started = self.clock.monotonic()
        ends = started + (deadline or self.deadline)
        messages = [{"role": "user", "content": prompt}]
        attempts: list[Attempt] = []
        tried: set[str] = set()
        refused: set[str] = set()  # targets the policy refuses are not retried within this call
        last_tried: str | None = None
        self._rotation += 1
        while len(attempts) < MAX_ATTEMPTS:
            for candidate in self.candidates(strategy, budget, endpoint, tried | refused):
                sent = len(attempts)
                reply = await self._try(candidate, messages, system, max_tokens, temperature, budget, attempts)
                tried.add(candidate.name)
                if reply is None and len(attempts) == sent:
                    continue  # another process took its last budget (or its probe) first: not sent
                if attempts and attempts[-1].kind == "refused_target":
                    refused.add(candidate.name)
                    continue
                last_tried = candidate.name
                if reply is not None:
                    reply.strategy = strategy
                    reply.attempts = attempts
                    return reply
                if len(attempts) >= MAX_ATTEMPTS:
                    break
            wait = self._next_ready([e for e in configured if e.name not in refused], budget)
            if last_tried is not None and wait == 0:
                retries = sum(1 for a in attempts if a.endpoint == last_tried)
                wait = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (retries - 1)) * (0.5 + self.rng.random() / 2)
            if wait is None or self.clock.monotonic() + wait > ends or len(attempts) >= MAX_ATTEMPTS:
                break
            await self.sleep(wait)
            tried.clear()
        raise self._unavailable(attempts, configured)

    def _next_ready(self, endpoints: list[ApiEndpoint], tokens: int) -> float | None:
        waits = [self.health(e).ready_in(tokens) for e in endpoints if e.enabled and self.key_set(e)]
        return min(waits) if waits else None

    async def _try(self, endpoint: ApiEndpoint, messages: list[dict[str, str]], system: str | None,
                   max_tokens: int, temperature: float, budget: int, attempts: list[Attempt]) -> AiReply | None:
        health, counters = self.health(endpoint), self.counters(endpoint.name)
        try:
            # Checked again at every call: a stored endpoint may predate today's policy, or DNS moved.
            await anyio.to_thread.run_sync(self.store.policy.check, endpoint)
        except InvalidInput as refused:
            counters.last_error = f"refused_target: {refused.message}"
            attempts.append(Attempt(endpoint=endpoint.name, kind="refused_target", reason=refused.message))
            log.warning("AI endpoint %s not used: %s", endpoint.name, refused.message)
            return None
        if not self.shared.acquire(endpoint.name, health, budget):
            return None
        counters.requests += 1
        counters.in_flight += 1
        began = self.clock.monotonic()
        try:
            reply = await complete(self._http(), endpoint, self.environ[endpoint.api_key_env], messages, system,
                                   max_tokens, temperature)
        except CallFailed as failure:
            failure.reason = self.redactor.scrub(failure.reason)[:MAX_ERROR_CHARS]
            latency = self.clock.monotonic() - began
            counters.failures[failure.kind] += 1
            counters.last_error = f"{failure.kind}: {failure.reason}"
            counters.last_failure_at = self.clock.now()
            attempts.append(Attempt(endpoint=endpoint.name, status=failure.status, kind=failure.kind,
                                    reason=failure.reason))
            if not failure.endpoint_fault:
                raise InvalidInput(f"{endpoint.name} refused the request: {failure.reason}",
                                   hint="The request itself is wrong (not the endpoint): fix it and retry.",
                                   details={"attempts": [a.model_dump() for a in attempts]}) from None
            self._record(endpoint, health, lambda h, f=failure: h.faulted(f.kind, f.reason, latency, f.retry_after),
                         failure.headers)
            log.warning("AI endpoint %s failed: %s", endpoint.name, counters.last_error)
            return None
        finally:
            counters.in_flight -= 1
        latency = self.clock.monotonic() - began
        self._record(endpoint, health, lambda h: h.succeeded(latency, reply.usage.total_tokens), reply.headers)
        counters.successes += 1
        counters.add_latency(latency)
        counters.tokens_used += reply.usage.total_tokens
        counters.last_success_at = self.clock.now()
        return AiReply(text=self.redactor.scrub(reply.text), model=reply.model, usage=reply.usage,
                       endpoint=endpoint.name, provider=endpoint.provider, latency_ms=round(latency * 1000, 2),
                       strategy="", attempts=[])

    def _record(self, endpoint: ApiEndpoint, health: EndpointHealth, outcome: Callable[[EndpointHealth], None],
                headers: dict[str, str]) -> None:
        """The outcome and the provider's budget headers, as one change of the (shared) state."""

        def apply(state: EndpointHealth) -> None:
            outcome(state)
            self._reconcile(state, headers)

        self.shared.change(endpoint.name, health, apply)

    @staticmethod
    def _reconcile(health: EndpointHealth, headers: dict[str, str]) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        for name, bucket in (("requests", health.requests), ("tokens", health.tokens)):
            for key in (f"x-ratelimit-remaining-{name}", f"anthropic-ratelimit-{name}-remaining"):
                if bucket is not None and key in lowered:
                    with contextlib.suppress(ValueError):
                        bucket.reconcile(float(lowered[key]))

    def _unavailable(self, attempts: list[Attempt], configured: list[ApiEndpoint]) -> ProviderUnavailable:
        summary = "; ".join(f"{a.endpoint}: {a.reason}" for a in attempts) or "no endpoint was usable: " + ", ".join(
            f"{e.name} {self.health(e).status()} ({self.health(e).reason})" for e in configured if e.enabled)
        return ProviderUnavailable(f"no AI endpoint answered ({summary})",
                                   hint="See get_api_manager_stats; add another endpoint or wait for a recovery.",
                                   details={"attempts": [a.model_dump() for a in attempts]})

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=50, max_keepalive_connections=20))
        return self._client

    # --- stats ---------------------------------------------------------------------------------

    def stats(self) -> list[EndpointStats]:
        out = []
        for e in self.endpoints():
            h, c = self.health(e), self.counters(e.name)
            latencies = sorted(c.latencies)
            out.append(EndpointStats(
                name=e.name, provider=e.provider, model=e.model, enabled=e.enabled, key_set=self.key_set(e),
                status=h.status() if e.enabled else "DISABLED", reason=h.reason, requests=c.requests,
                successes=c.successes, failures=dict(c.failures),
                success_rate=round(c.successes / c.requests, 4) if c.requests else None,
                latency_p50_ms=_percentile_ms(latencies, 0.5), latency_p95_ms=_percentile_ms(latencies, 0.95),
                in_flight=c.in_flight, tokens_used=c.tokens_used,
                requests_budget=f"{max(0, int(h.requests.level))}/{e.max_requests_per_minute}",
                tokens_budget=f"{int(h.tokens.level)}/{e.max_tokens_per_minute}" if h.tokens else None,
                last_error=c.last_error, last_success_at=c.last_success_at, last_failure_at=c.last_failure_at))
        return out

    def reset_stats(self, name: str | None = None) -> int:
        names = [name] if name else [e.name for e in self.endpoints()]
        if name:
            self.store.get(name)
        for n in names:
            self.forget(n)
        return len(names)

    def forget(self, name: str) -> None:
        """Drop the counters and health of an endpoint (reset, or removed)."""
        self._counters.pop(name, None)
        self._health.pop(name, None)
        self._routing = None
        self.shared.forget(name)

    def component_health(self) -> ComponentHealth:
        try:
            endpoints = [e for e in self.endpoints() if e.enabled]
        except Exception as exc:  # health must report, not raise
            return ComponentHealth(name="ai", status="down", detail=type(exc).__name__)
        if not endpoints:
            return ComponentHealth(name="ai", status="ok", detail="no AI endpoints configured")
        statuses = Counter(self.health(e).status() for e in endpoints)
        usable = statuses["ACTIVE"] + statuses["DEGRADED"]
        status = "ok" if statuses["ACTIVE"] == len(endpoints) else ("degraded" if usable else "down")
        return ComponentHealth(name="ai", status=status,
                               detail=", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
                               metrics={"endpoints": len(endpoints), "usable": usable})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _percentile_ms(sorted_seconds: list[float], q: float) -> float | None:
    if not sorted_seconds:
        return None
    return round(sorted_seconds[int(q * (len(sorted_seconds) - 1))] * 1000, 2)
