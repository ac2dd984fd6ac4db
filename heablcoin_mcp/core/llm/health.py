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
    results: deque[tuple[float, bool, float]] = field(default_factory=deque)  # (t, ok, latency s)

    def status(self) -> Status:
        now = self.clock.monotonic()
        if self.open_until is not None:
            return "FAILED"
        if (self.rate_limited_until is not None and now < self.rate_limited_until) or not self.requests.available():
            return "RATE_LIMITED"
        if self._degraded():
            return "DEGRADED"
        return "ACTIVE"

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
        now = self.clock.monotonic()
        self.results.append((now, ok, latency))
        while self.results and self.results[0][0] < now - self.policy.window:
            self.results.popleft()

    def _degraded(self) -> bool:
        since = self.clock.monotonic() - self.policy.window
        recent = [r for r in self.results if r[0] >= since]
        if len(recent) < self.policy.min_samples:
            return False
        errors = sum(1 for _, ok, _ in recent if not ok) / len(recent)
        latencies = sorted(latency for _, ok, latency in recent if ok)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0
        return errors > self.policy.degraded_error_rate or p95 > self.policy.degraded_latency
