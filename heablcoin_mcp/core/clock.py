"""Time is passed in, so leases, expiry, rate limits and daily windows are testable without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time in seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes backwards, for durations."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
