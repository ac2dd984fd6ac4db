"""A TTL + LRU cache with a memory cap, for market data responses.

TTL rules (see ``ohlcv_ttl``): a range of closed candles never changes, so it is kept for a day;
a range that includes the open candle is fresh only for a few seconds (longer timeframes move the
open candle less often, so up to 30 s).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from heablcoin_mcp.core.clock import Clock

CLOSED_RANGE_TTL = 86_400.0
OPEN_CANDLE_TTL_MIN = 2.0
OPEN_CANDLE_TTL_MAX = 30.0


def ohlcv_ttl(timeframe_seconds: int, newest_start_ms: int | None, now_ms: int) -> float:
    """Seconds a fetched candle range stays fresh."""
    if newest_start_ms is not None and newest_start_ms + timeframe_seconds * 1000 <= now_ms:
        return CLOSED_RANGE_TTL
    return min(OPEN_CANDLE_TTL_MAX, max(OPEN_CANDLE_TTL_MIN, timeframe_seconds / 120))


def approximate_size(value: Any) -> int:
    """Bytes, roughly: lists are sized from their first item, so this stays O(depth), not O(items)."""
    if isinstance(value, list):
        return 56 + 8 * len(value) + (approximate_size(value[0]) * len(value) if value else 0)
    if isinstance(value, dict):
        return 232 + sum(approximate_size(v) for v in value.values())
    if hasattr(value, "model_dump"):
        return 400 + 64 * len(type(value).model_fields)
    return sys.getsizeof(value)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class TTLCache:
    def __init__(self, clock: Clock, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.clock = clock
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._entries: OrderedDict[Hashable, tuple[float, int, Any]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock.monotonic():
            if entry is not None:
                self._drop(key)
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[2]

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        if key in self._entries:
            self._drop(key)
        size = approximate_size(value)
        if size > self.max_bytes:
            return
        self._entries[key] = (self.clock.monotonic() + ttl, size, value)
        self._bytes += size
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.stats.evictions += 1

    def _drop(self, key: Hashable) -> None:
        _, size, _ = self._entries.pop(key)
        self._bytes -= size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def snapshot(self) -> dict[str, int | float]:
        lookups = self.stats.hits + self.stats.misses
        return {
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "hits": self.stats.hits,
            "misses": self.stats.misses,
            "evictions": self.stats.evictions,
            "hit_rate": round(self.stats.hits / lookups, 4) if lookups else 0.0,
        }
