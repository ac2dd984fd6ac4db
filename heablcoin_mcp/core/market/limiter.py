"""One request budget per (exchange, account) for every process, in Redis.

ccxt spaces one client's requests by the exchange's limit (``rateLimit`` ms per unit of request
weight); several servers and workers each doing so would together exceed it. With
``HEABLCOIN_REDIS_URL`` every ccxt client of the product asks this limiter instead: a Lua script
reserves the next free slot on Redis's own clock (so hosts need not agree on the time) and the
caller sleeps until its slot — one round trip, first come first served, no retry loop.
"""

from __future__ import annotations

from typing import Any

import anyio

from heablcoin_mcp.errors import ConfigError

# KEYS[1]: the (exchange, account) key. ARGV: ms per unit of weight, the request's weight.
# Returns the ms to wait before sending.
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local step = tonumber(ARGV[1]) * tonumber(ARGV[2])
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(start + step), 'PX', math.ceil(start + step - now) + 60000)
return tostring(start - now)
"""


class SharedExchangeLimiter:
    def __init__(self, url: str, *, prefix: str = "heablcoin:exchange:") -> None:
        try:
            import redis.asyncio as redis
        except ImportError:
            raise ConfigError("HEABLCOIN_REDIS_URL is set but the redis package is not installed",
                              hint="pip install 'heablcoin-mcp[redis]'") from None
        self.client: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self._reserve = self.client.register_script(RESERVE)

    async def wait(self, exchange: str, account: str, cost: float, ms_per_unit: float) -> float:
        """Reserve the next slot for a request of ``cost`` and sleep until it; the seconds waited."""
        waited = float(await self._reserve(keys=[f"{self.prefix}{exchange}:{account}"], args=[ms_per_unit, cost]))
        if waited > 0:
            await anyio.sleep(waited / 1000)
        return waited / 1000

    def install(self, client: Any, account: str) -> None:
        """Make a ccxt client's every request (its ``fetch2`` throttle) wait for the shared slot."""

        async def throttle(cost: float | None = None) -> None:
            await self.wait(client.id, account, cost or 1, client.rateLimit)

        client.throttle = throttle

    async def aclose(self) -> None:
        await self.client.aclose()
