"""A scripted MarketData: the test sets the price and the candles, so fills are exactly predictable."""

from __future__ import annotations

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.models import (
    TIMEFRAME_SECONDS,
    Candle,
    Derivatives,
    MarketInfo,
    OrderBook,
    Ticker,
    Trade,
)

MINUTE_MS = 60_000


class ScriptedMarket:
    name = "scripted"
    simulated = True

    def __init__(self, clock: Clock, price: float = 100.0) -> None:
        self.clock = clock
        self.price = price
        self.book_levels = [(0.1, 5.0), (0.2, 5.0), (0.5, 10.0)]  # (distance from price, amount)
        self.extremes: dict[int, tuple[float, float]] = {}  # minute start ms -> (high, low)
        self.opens: dict[int, float] = {}  # minute start ms -> open, for gaps

    def set_price(self, price: float) -> None:
        self.price = price

    def spike(self, minute_ms: int, high: float, low: float, open: float | None = None) -> None:
        """Make the 1m candle containing ``minute_ms`` reach these extremes (and open there: a gap)."""
        minute = minute_ms - minute_ms % MINUTE_MS
        self.extremes[minute] = (high, low)
        if open is not None:
            self.opens[minute] = open

    async def markets(self) -> dict[str, MarketInfo]:
        return {s: MarketInfo(symbol=s, base=s.split("/")[0], quote="USDT", type="spot", active=True,
                              price_tick=0.01, amount_step=0.001, min_amount=0.001, min_notional=5.0,
                              maker_fee=0.001, taker_fee=0.002) for s in ("BTC/USDT", "ETH/USDT")}

    async def timeframes(self) -> list[str]:
        return list(TIMEFRAME_SECONDS)

    async def ticker(self, symbol: str) -> Ticker:
        return Ticker(symbol=symbol, timestamp=int(self.clock.now() * 1000), last=self.price,
                      bid=self.price - 0.1, ask=self.price + 0.1, high_24h=self.price, low_24h=self.price,
                      open_24h=self.price, change_24h_pct=0.0, base_volume_24h=1000.0, quote_volume_24h=1e5)

    async def ohlcv(self, symbol: str, timeframe: str, limit: int, since: int | None = None) -> list[Candle]:
        tf_ms = TIMEFRAME_SECONDS[timeframe] * 1000
        now = int(self.clock.now() * 1000)
        end = now - now % tf_ms
        start = since - since % tf_ms if since is not None else end - (limit - 1) * tf_ms
        rows = []
        for ts in range(start, end + 1, tf_ms):
            high, low = self.price, self.price
            for minute, (h, lo) in self.extremes.items():
                if ts <= minute < ts + tf_ms:
                    high, low = max(high, h), min(low, lo)
            rows.append([float(ts), self.opens.get(ts, self.price), high, low, self.price, 10.0])
        return rows[:limit]

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        return OrderBook(symbol=symbol, timestamp=int(self.clock.now() * 1000),
                         bids=[(self.price - d, a) for d, a in self.book_levels][:depth],
                         asks=[(self.price + d, a) for d, a in self.book_levels][:depth])

    async def trades(self, symbol: str, limit: int) -> list[Trade]:
        return []

    async def derivatives(self, symbol: str) -> Derivatives:
        return Derivatives(symbol=symbol, unavailable={"funding_rate": "scripted market"})

    async def close(self) -> None:
        pass
