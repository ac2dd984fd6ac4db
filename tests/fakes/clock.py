from __future__ import annotations


class ManualClock:
    """A clock that moves only when a test says so."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self._now = start
        self._monotonic = 1_000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._monotonic += seconds
