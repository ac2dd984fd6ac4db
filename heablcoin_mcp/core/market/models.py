"""Market data shapes shared by every source (ccxt, sim) and every consumer."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

# [timestamp_ms, open, high, low, close, volume] — ccxt's row format, kept as plain lists: cheap to
# slice, cache and hand to pandas.
Candle = list[float]

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "2h": 7200, "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200,
    "1d": 86400, "3d": 259200, "1w": 604800,
}


class MarketInfo(BaseModel):
    symbol: str
    base: str
    quote: str
    type: str = Field(description="spot or swap")
    active: bool
    price_tick: float | None = None
    amount_step: float | None = None
    min_amount: float | None = None
    min_notional: float | None = None
    maker_fee: float | None = None
    taker_fee: float | None = None


class Ticker(BaseModel):
    symbol: str
    timestamp: int
    last: float
    bid: float | None
    ask: float | None
    high_24h: float | None
    low_24h: float | None
    open_24h: float | None
    change_24h_pct: float | None
    base_volume_24h: float | None
    quote_volume_24h: float | None


class OrderBook(BaseModel):
    symbol: str
    timestamp: int
    bids: list[tuple[float, float]] = Field(description="[price, amount], best first")
    asks: list[tuple[float, float]] = Field(description="[price, amount], best first")


class Trade(BaseModel):
    timestamp: int
    side: str | None
    price: float
    amount: float


class Derivatives(BaseModel):
    symbol: str = Field(description="the perpetual contract the figures come from")
    funding_rate: float | None = None
    next_funding_time: int | None = None
    mark_price: float | None = None
    open_interest: float | None = Field(None, description="in contracts / base units")
    open_interest_value: float | None = Field(None, description="in quote currency")
    long_short_ratio: float | None = None
    unavailable: dict[str, str] = Field(default_factory=dict, description="figure -> why it is missing")


class MarketData(Protocol):
    """A source of public market data. Every method may raise a HeablError."""

    name: str
    simulated: bool

    async def markets(self) -> dict[str, MarketInfo]: ...

    async def timeframes(self) -> list[str]: ...

    async def ticker(self, symbol: str) -> Ticker: ...

    async def ohlcv(self, symbol: str, timeframe: str, limit: int, since: int | None = None) -> list[Candle]: ...

    async def order_book(self, symbol: str, depth: int) -> OrderBook: ...

    async def trades(self, symbol: str, limit: int) -> list[Trade]: ...

    async def derivatives(self, symbol: str) -> Derivatives: ...

    async def close(self) -> None: ...
