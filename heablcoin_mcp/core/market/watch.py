"""Watching prices for a while: every change handed to a callback (at most one a second per symbol),
and a summary at the end. From the ticker stream when this process streams, else a ticker a second."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from pydantic import BaseModel, Field

from heablcoin_mcp.core.market.models import Ticker
from heablcoin_mcp.core.market.service import MarketService, Stamp
from heablcoin_mcp.errors import InvalidInput

MAX_SYMBOLS = 10
MAX_SECONDS = 600.0
PUSH_INTERVAL = 1.0


class WatchedMarket(BaseModel):
    symbol: str
    updates: int = Field(0, description="price updates seen")
    first: float | None = None
    last: float | None = None
    high: float | None = None
    low: float | None = None
    change_pct: float | None = Field(None, description="last vs first, in %")

    def saw(self, price: float) -> None:
        self.updates += 1
        self.first = price if self.first is None else self.first
        self.last = price
        self.high = price if self.high is None else max(self.high, price)
        self.low = price if self.low is None else min(self.low, price)
        self.change_pct = round((price / self.first - 1) * 100, 2) if self.first else None


class WatchReport(Stamp):
    streamed: bool = Field(description="true: from the exchange's stream; false: a ticker every second")
    seconds: float
    markets: list[WatchedMarket]


OnPrice = Callable[[str, float, float], Awaitable[None]]  # symbol, price, seconds since the start


async def watch(market: MarketService, symbols: list[str], seconds: float, on_price: OnPrice) -> WatchReport:
    """Raises InvalidInput (too many symbols, a duration out of range) or NotFound (unknown symbol)."""
    if not 1 <= len(symbols) <= MAX_SYMBOLS:
        raise InvalidInput(f"watch 1 to {MAX_SYMBOLS} symbols at a time, got {len(symbols)}")
    if not 0 < seconds <= MAX_SECONDS:
        raise InvalidInput(f"seconds must be more than 0 and at most {MAX_SECONDS:g} (10 minutes)")
    canonical = list(dict.fromkeys([(await market.market(s)).symbol for s in symbols]))
    watched = {s: WatchedMarket(symbol=s) for s in canonical}
    streams = market.streams if market.streams is not None and market.streams.running else None
    started = anyio.current_time()

    async def follow(symbol: str) -> None:
        pushed_at = -PUSH_INTERVAL

        async def seen(ticker: Ticker) -> None:
            nonlocal pushed_at
            if watched[symbol].last == ticker.last:
                return
            watched[symbol].saw(ticker.last)
            elapsed = anyio.current_time() - started
            if elapsed - pushed_at >= PUSH_INTERVAL:
                pushed_at = elapsed
                await on_price(symbol, ticker.last, round(elapsed, 3))

        if streams is not None:
            async with streams.subscribe("ticker", symbol) as updates:
                async for ticker in updates:
                    await seen(ticker)
        while True:  # no streams here, or they stopped meanwhile: a ticker a second
            await seen(await market.ticker(symbol))
            await anyio.sleep(PUSH_INTERVAL)

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as group:
            for symbol in canonical:
                group.start_soon(follow, symbol)
    return WatchReport(**market.stamp(), streamed=streams is not None,
                       seconds=round(anyio.current_time() - started, 3), markets=list(watched.values()))
