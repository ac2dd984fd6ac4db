"""Per-endpoint health: circuit breaker, rate budgets and a recent window of results.

States (checked in this order):
- FAILED: the circuit is open after ``failure_threshold`` consecutive endpoint faults, or at once on
  an authentication failure. After a cooldown (``cooldown`` seconds, doubling on every further trip,
  capped at ``max_cooldown``) one half-open probe is let through: success → ACTIVE, fault → FAILED
  again with the longer cooldown.
- RATE_LIMITED: a 429 (until its Retry-After, capped at ``max_rate_limit_wait``), or the local
  request/token budget is empty (until it refills).
- DEGRADED: in the last ``window`` seconds, with at least ``min_samples`` calls, the error rate is
  above ``degraded_error_rate`` or the p95 latency above ``degraded_latency``. Still used, after
  healthier endpoints.
- ACTIVE: otherwise.
Only the endpoint's faults count; a caller's bad request does not.

The window is kept as rolling aggregates (``RollingWindow``): results land in time buckets whose
counts are summed as they arrive and subtracted as they age out, so reading the status costs the
same with an empty window and with ten thousand calls in it.

Everything but the window can be shared between processes (``dump`` / ``load``, see
``shared.py``): the circuit, the probe, 429 waits and both budgets. Shared state is timed by the
wall clock (``now``), which every host agrees on; per-process state by the monotonic clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ACTIVE", "DEGRADED", "RATE_LIMITED", "FAILED"]


@dataclass(frozen=True)
class HealthPolicy:
    failure_threshold: int = 3
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    max_rate_limit_wait: float = 300.0
    window: float = 300.0
    min_samples: int = 5
    degraded_error_rate: float = 0.3
    degraded_latency: float = 10.0
    probe_lease: float = 300.0  # a half-open probe not answered by then is lost (its process died)


class TokenBucket:
    """``capacity`` units refilled evenly over a minute; reconciled from provider headers."""

    def __init__(self, per_minute: float, now: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.now = now
        self.updated = now()

    def _refill(self) -> None:
        now = self.now()
        self.level, self.updated = self.level_at(now), now

    def available(self, amount: float = 1.0) -> bool:
        self._refill()
        return self.level >= amount

    def level_at(self, now: float) -> float:
        """What the bucket holds at ``now``, without changing it."""
        return min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)

    def take(self, amount: float = 1.0) -> None:
        self._refill()
        self.level -= amount

    def seconds_until(self, amount: float = 1.0) -> float:
        self._refill()
        return 0.0 if self.level >= amount else (amount - self.level) * 60.0 / self.capacity

    def reconcile(self, remaining: float) -> None:
        """The provider says how much is left: trust the lower of the two."""
        self._refill()
        self.level = min(self.level, remaining)


BUCKETS = 30  # the window in 30 slices: a result ages out within a thirtieth of the window


class RollingWindow:
    """Calls, errors and slow successes of the last ``seconds``, in O(1) per record and per read.

    A p95 latency above the limit is counted exactly without keeping latencies: the 95th percentile
    of n successes (nearest rank, as ``sorted[int(0.95 * (n - 1))]``) is above the limit exactly
    when at most ``int(0.95 * (n - 1))`` of them are at or below it.
    """

    def __init__(self, seconds: float, slow_above: float) -> None:
        self.width = seconds / BUCKETS
        self.seconds, self.slow_above = seconds, slow_above
        self._buckets: deque[list[float]] = deque()  # [start, calls, errors, slow]
        self.calls = self.errors = self.slow = 0

    def record(self, now: float, ok: bool, latency: float) -> None:
        self._expire(now)
        if not self._buckets or now >= self._buckets[-1][0] + self.width:
            self._buckets.append([now - now % self.width, 0, 0, 0])
        bucket = self._buckets[-1]
        slow = ok and latency > self.slow_above
        bucket[1] += 1
        bucket[2] += not ok
        bucket[3] += slow
        self.calls += 1
        self.errors += not ok
        self.slow += slow

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] + self.width <= now - self.seconds:
            _, calls, errors, slow = self._buckets.popleft()
            self.calls -= int(calls)
            self.errors -= int(errors)
            self.slow -= int(slow)

    def next_change(self) -> float:
        """When the oldest results age out (infinity with none)."""
        return self._buckets[0][0] + self.width + self.seconds if self._buckets else math.inf

    def degraded(self, now: float, min_samples: int, error_rate: float) -> bool:
        self._expire(now)
        if self.calls < min_samples:
            return False
        successes = self.calls - self.errors
        p95_slow = successes > 0 and successes - self.slow <= int(0.95 * (successes - 1))
        return self.errors / self.calls > error_rate or p95_slow


@dataclass
class EndpointHealth:
    policy: HealthPolicy
    now: Callable[[], float]
    requests: TokenBucket
    tokens: TokenBucket | None = None
    consecutive_faults: int = 0
    trips: int = 0
    open_until: float | None = None  # set while FAILED
    probe_started: float | None = None  # a half-open probe is out since then
    rate_limited_until: float | None = None
    reason: str = "no calls yet"
    results: RollingWindow = field(init=False)
    version: int = field(default=0, init=False)  # bumped by everything that records

    def __post_init__(self) -> None:
        self.results = RollingWindow(self.policy.window, self.policy.degraded_latency)

    @property
    def probing(self) -> bool:
        return self._probing_at(self.now())

    def _probing_at(self, now: float) -> bool:
        return self.probe_started is not None and now < self.probe_started + self.policy.probe_lease

    def selection(self, tokens: int, now: float) -> tuple[bool, bool, float]:
        """(``usable(tokens)``, tried after the healthy ones: DEGRADED, until when both answers hold
        if nothing is recorded meanwhile), changing nothing. A FAILED endpoint due its half-open
        probe is not tried last: it keeps its place, so a recovered first choice is found again.

        ``until`` is when time alone may change the answer: a cooldown, a probe lease or a 429 wait
        ends, a budget refills, or the window's oldest results age out. Anything recorded bumps
        ``version``, so the manager can keep answers and re-read only what changed."""
        if self.open_until is not None:
            if now < self.open_until:
                return False, False, self.open_until
            if self._probing_at(now):
                return False, False, self.probe_started + self.policy.probe_lease  # type: ignore[operator]
            return True, False, math.inf
        if self.rate_limited_until is not None and now < self.rate_limited_until:
            return False, False, self.rate_limited_until
        for bucket, wanted in ((self.requests, 1.0), (self.tokens, float(tokens))):
            if bucket is not None and (level := bucket.level_at(now)) < wanted:
                refilled = now + (wanted - level) * 60.0 / bucket.capacity if wanted <= bucket.capacity else math.inf
                return False, False, refilled
        degraded = self.results.degraded(now, self.policy.min_samples, self.policy.degraded_error_rate)
        return True, degraded, self.results.next_change()

    def dump(self) -> dict[str, str]:
        """The shared fields as text (a Redis hash); the window stays in this process."""
        fields: dict[str, object] = {
            "consecutive_faults": self.consecutive_faults, "trips": self.trips, "open_until": self.open_until,
            "probe_started": self.probe_started, "rate_limited_until": self.rate_limited_until,
            "reason": self.reason, "requests_level": self.requests.level, "requests_updated": self.requests.updated}
        if self.tokens is not None:
            fields |= {"tokens_level": self.tokens.level, "tokens_updated": self.tokens.updated}
        return {k: "" if v is None else str(v) for k, v in fields.items()}

    def load(self, fields: Mapping[str, str]) -> None:
        """Take the shared fields another process stored; none stored (never called, or reset) is a
        fresh state: circuit closed, budgets full."""
        self.version += 1
        if not fields:
            self.consecutive_faults = self.trips = 0
            self.open_until = self.probe_started = self.rate_limited_until = None
            self.reason = "no calls yet"
            for fresh in (self.requests, self.tokens):
                if fresh is not None:
                    fresh.level, fresh.updated = fresh.capacity, self.now()
            return

        def number(name: str) -> float | None:
            value = fields.get(name, "")
            return float(value) if value else None

        self.consecutive_faults = int(number("consecutive_faults") or 0)
        self.trips = int(number("trips") or 0)
        self.open_until, self.probe_started = number("open_until"), number("probe_started")
        self.rate_limited_until = number("rate_limited_until")
        self.reason = fields.get("reason", self.reason)
        for bucket, name in ((self.requests, "requests"), (self.tokens, "tokens")):
            level, updated = number(f"{name}_level"), number(f"{name}_updated")
            if bucket is not None and level is not None and updated is not None:
                bucket.level, bucket.updated = min(level, bucket.capacity), updated

    def status(self) -> Status:
        now = self.now()
        if self.open_until is not None:
            return "FAILED"
        if (self.rate_limited_until is not None and now < self.rate_limited_until) or not self.requests.available():
            return "RATE_LIMITED"
        if self.results.degraded(now, self.policy.min_samples, self.policy.degraded_error_rate):
            return "DEGRADED"
        return "ACTIVE"

    def usable(self, tokens: int) -> bool:
        """May a call go out now? (A FAILED endpoint past its cooldown lets one probe through.)"""
        return self.selection(tokens, self.now())[0]

    def ready_in(self, tokens: int) -> float:
        """Seconds until usable again (0 if now)."""
        now = self.now()
        waits = [0.0]
        if self.open_until is not None:
            waits.append(self.open_until - now if not self.probing else self.policy.cooldown)
        if self.rate_limited_until is not None:
            waits.append(self.rate_limited_until - now)
        waits.append(self.requests.seconds_until())
        if self.tokens is not None:
            waits.append(self.tokens.seconds_until(min(tokens, self.tokens.capacity)))
        return max(0.0, max(waits))

    def started(self) -> None:
        self.version += 1
        if self.open_until is not None:
            self.probe_started = self.now()
        self.requests.take()

    def acquire(self, tokens: int) -> bool:
        """``usable`` and ``started`` in one step (one step of a shared transaction)."""
        if not self.usable(tokens):
            return False
        self.started()
        return True

    def succeeded(self, latency: float, tokens_used: int) -> None:
        self.record(True, latency)
        if self.tokens is not None:
            self.tokens.take(tokens_used)
        self.consecutive_faults, self.open_until, self.probe_started = 0, None, None
        if self.trips:
            self.reason = "recovered: the half-open probe succeeded"
            self.trips = 0
        else:
            self.reason = "healthy"

    def faulted(self, kind: str, reason: str, latency: float, retry_after: float | None) -> None:
        self.record(False, latency)
        now = self.now()
        self.consecutive_faults += 1
        if kind == "rate_limited":
            asked = retry_after if retry_after is not None else self.policy.cooldown
            wait = min(asked, self.policy.max_rate_limit_wait)
            self.rate_limited_until = now + wait
            self.reason = f"rate limited by the provider for {wait:g} s"
        if kind == "auth" or self.probing or self.consecutive_faults >= self.policy.failure_threshold:
            self.trips += 1
            cooldown = min(self.policy.cooldown * 2 ** (self.trips - 1), self.policy.max_cooldown)
            self.open_until, self.probe_started = now + cooldown, None
            self.reason = (f"circuit open for {cooldown:g} s after {reason}"
                           + (" — check the key in its environment variable" if kind == "auth" else ""))
        elif kind != "rate_limited":
            self.reason = f"last call failed: {reason}"

    def record(self, ok: bool, latency: float) -> None:
        """A result into the window (``succeeded`` and ``faulted`` do this and more)."""
        self.version += 1
        self.results.record(self.now(), ok, latency)
