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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from heablcoin_mcp.core.clock import Clock

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


class TokenBucket:
    """``capacity`` units refilled evenly over a minute; reconciled from provider headers."""

    def __init__(self, per_minute: float, clock: Clock) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.clock = clock
        self.updated = clock.monotonic()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
        self.updated = now

    def available(self, amount: float = 1.0) -> bool:
        self._refill()
        return self.level >= amount

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
    clock: Clock
    requests: TokenBucket
    tokens: TokenBucket | None = None
    consecutive_faults: int = 0
    trips: int = 0
    open_until: float | None = None  # monotonic; set while FAILED
    probing: bool = False
    rate_limited_until: float | None = None
    reason: str = "no calls yet"
    results: RollingWindow = field(init=False)

    def __post_init__(self) -> None:
        self.results = RollingWindow(self.policy.window, self.policy.degraded_latency)

    def status(self) -> Status:
        now = self.clock.monotonic()
        if self.open_until is not None:
            return "FAILED"
        if (self.rate_limited_until is not None and now < self.rate_limited_until) or not self.requests.available():
            return "RATE_LIMITED"
        if self.results.degraded(now, self.policy.min_samples, self.policy.degraded_error_rate):
            return "DEGRADED"
        return "ACTIVE"

    def tried_last(self) -> bool:
        """Is a usable endpoint DEGRADED (tried after the healthy ones)? A FAILED one due its
        half-open probe is not: it keeps its place, so a recovered first choice is found again."""
        return self.open_until is None and self.results.degraded(
            self.clock.monotonic(), self.policy.min_samples, self.policy.degraded_error_rate)

    def usable(self, tokens: int) -> bool:
        """May a call go out now? (A FAILED endpoint past its cooldown lets one probe through.)"""
        now = self.clock.monotonic()
        if self.open_until is not None:
            return now >= self.open_until and not self.probing
        if self.rate_limited_until is not None and now < self.rate_limited_until:
            return False
        return self.requests.available() and (self.tokens is None or self.tokens.available(tokens))

    def ready_in(self, tokens: int) -> float:
        """Seconds until usable again (0 if now)."""
        now = self.clock.monotonic()
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
        if self.open_until is not None:
            self.probing = True
        self.requests.take()

    def succeeded(self, latency: float, tokens_used: int) -> None:
        self._record(True, latency)
        if self.tokens is not None:
            self.tokens.take(tokens_used)
        self.consecutive_faults, self.open_until, self.probing = 0, None, False
        if self.trips:
            self.reason = "recovered: the half-open probe succeeded"
            self.trips = 0
        else:
            self.reason = "healthy"

    def faulted(self, kind: str, reason: str, latency: float, retry_after: float | None) -> None:
        self._record(False, latency)
        now = self.clock.monotonic()
        self.consecutive_faults += 1
        if kind == "rate_limited":
            asked = retry_after if retry_after is not None else self.policy.cooldown
            wait = min(asked, self.policy.max_rate_limit_wait)
            self.rate_limited_until = now + wait
            self.reason = f"rate limited by the provider for {wait:g} s"
        if kind == "auth" or self.probing or self.consecutive_faults >= self.policy.failure_threshold:
            self.trips += 1
            cooldown = min(self.policy.cooldown * 2 ** (self.trips - 1), self.policy.max_cooldown)
            self.open_until, self.probing = now + cooldown, False
            self.reason = (f"circuit open for {cooldown:g} s after {reason}"
                           + (" — check the key in its environment variable" if kind == "auth" else ""))
        elif kind != "rate_limited":
            self.reason = f"last call failed: {reason}"

    def _record(self, ok: bool, latency: float) -> None:
        self.results.record(self.clock.monotonic(), ok, latency)
