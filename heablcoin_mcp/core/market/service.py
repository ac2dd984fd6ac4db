"""MarketService: validation, caching and result shaping in front of any MarketData source.

Everything the market tools return carries ``exchange``, ``as_of`` and ``simulated`` so a model
can never mistake simulated prices for real ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.cache import TTLCache, ohlcv_ttl
from heablcoin_mcp.core.market.models import (
    TIMEFRAME_SECONDS,
    Candle,
    Derivatives,
    MarketData,
    MarketInfo,
    OrderBook,
    Ticker,
    Trade,
)
from heablcoin_mcp.core.monitor.health import ComponentHealth
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.errors import HeablError, InvalidInput, NotFound

if TYPE_CHECKING:
    from heablcoin_mcp.core.market.streams import MarketStreams

T = TypeVar("T")

MAX_CANDLES = 5000
MAX_DEPTH = 500
MAX_TRADES = 1000
TICKER_TTL = 2.0
BOOK_TTL = 1.0
TRADES_TTL = 2.0
DERIVATIVES_TTL = 30.0
MARKETS_TTL = 3600.0


class Stamp(BaseModel):
    exchange: str
    simulated: bool
    as_of: str = Field(description="ISO-8601 UTC time of the data")


class TickerReport(Stamp, Ticker):
    spread: float | None = None
    spread_pct: float | None = None


class OhlcvReport(Stamp):
    symbol: str
    timeframe: str
    columns: list[str] = ["timestamp", "open", "high", "low", "close", "volume"]
    rows: list[Candle]
    count: int
    last_candle_open: bool = Field(description="true when the newest row is the still-forming candle")


class OrderBookReport(Stamp, OrderBook):
    mid: float | None
    spread: float | None
    spread_pct: float | None
    bid_depth: float = Field(description="sum of bid amounts (base units) over the returned levels")
    ask_depth: float = Field(description="sum of ask amounts (base units) over the returned levels")
    imbalance: float | None = Field(description="(bid_depth - ask_depth) / (bid_depth + ask_depth), -1..1")
    streamed: bool = Field(False, description="from the local book kept by the stream")


class TradesReport(Stamp):
    symbol: str
    trades: list[Trade]


class DerivativesReport(Stamp, Derivatives):
    pass


class MarketsReport(Stamp):
    total: int = Field(description="markets matching the filters before the limit")
    markets: list[MarketInfo]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def normalise_symbol(symbol: str) -> str:
    return symbol.strip().upper().replace("-", "/").replace("_", "/")


def squeezed(symbol: str) -> str:
    """The symbol as a person might type it without separators: SOL/USDT -> SOLUSDT."""
    return "".join(ch for ch in symbol.upper() if ch.isalnum())


class MarketService:
    def __init__(self, source: MarketData, cache: TTLCache, clock: Clock, metrics: Metrics | None = None) -> None:
        self.source = source
        self.cache = cache
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.streams: MarketStreams | None = None  # set by the App when this process streams
        self._last_error: str | None = None

    @property
    def exchange(self) -> str:
        return self.source.name

    def stamp(self, ms: int | None = None) -> dict[str, Any]:
        return {"exchange": self.exchange, "simulated": self.source.simulated,
                "as_of": iso(ms if ms is not None else self._now_ms())}

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def _cached(self, key: tuple[Any, ...], ttl: float | Callable[[T], float],
                      fetch: Callable[[], Awaitable[T]]) -> T:
        hit = self.cache.get(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        try:
            value = await fetch()
        except HeablError as exc:
            self._last_error = f"{exc.code}: {exc.message}"
            self.metrics.count("heablcoin_exchange_requests", self.exchange, exc.code)
            raise
        self._last_error = None
        self.metrics.count("heablcoin_exchange_requests", self.exchange, "ok")
        self.cache.put(key, value, ttl(value) if callable(ttl) else ttl)
        return value

    # --- validation ----------------------------------------------------------------------------

    async def all_markets(self) -> dict[str, MarketInfo]:
        return await self._cached(("markets",), MARKETS_TTL, self.source.markets)

    async def market(self, symbol: str) -> MarketInfo:
        """The market for a symbol, accepting any case, '-' or '_' as separator, or none (SOLUSDT).

        Raises:
            NotFound: unknown symbol, with close matches in the hint.
        """
        if not isinstance(symbol, str) or not symbol.strip():
            raise InvalidInput("symbol must be a non-empty string such as 'BTC/USDT'")
        markets = await self.all_markets()
        wanted = normalise_symbol(symbol)
        if wanted in markets:
            return markets[wanted]
        unseparated = [name for name in markets if squeezed(name) == squeezed(wanted)]
        if len(unseparated) == 1:
            return markets[unseparated[0]]
        suggestions = suggest_symbols(wanted, list(markets))
        hint = (f"Did you mean {' or '.join(suggestions)}?" if suggestions
                else "Call list_markets to see the symbols this exchange trades.")
        raise NotFound(f"unknown symbol {symbol} on {self.exchange}", hint=hint,
                       details={"suggestions": suggestions})

    async def timeframes(self) -> list[str]:
        return await self.source.timeframes()

    async def timeframe(self, timeframe: str) -> str:
        available = await self.timeframes()
        value = timeframe.strip() if isinstance(timeframe, str) else timeframe
        if value in available:
            return str(value)
        # 4H means 4h; but 1M is a month and 1m a minute, so m/M is never guessed.
        same = [tf for tf in available if isinstance(value, str) and tf.lower() == value.lower()]
        if len(same) == 1 and not value.lower().endswith("m"):
            return same[0]
        raise InvalidInput(f"unsupported timeframe {timeframe!r} on {self.exchange}",
                           hint=f"Use one of: {', '.join(available)} (m = minute, M = month).")

    @staticmethod
    def check_range(name: str, value: int, low: int, high: int) -> int:
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low} and {high}, got {value}",
                               hint=f"Ask for at most {high}; page with 'since' for more history.")
        return value

    # --- data ----------------------------------------------------------------------------------

    async def ticker(self, symbol: str) -> TickerReport:
        market = await self.market(symbol)
        ticker = self.streams.latest("ticker", market.symbol, TICKER_TTL) if self.streams else None
        if ticker is None or ticker.bid is None or ticker.ask is None:  # some streams carry no book top
            ticker = await self._cached(("ticker", market.symbol), TICKER_TTL,
                                        lambda: self.source.ticker(market.symbol))
        spread = ticker.ask - ticker.bid if ticker.ask is not None and ticker.bid is not None else None
        return TickerReport(**self.stamp(ticker.timestamp), **ticker.model_dump(), spread=spread,
                            spread_pct=spread / ticker.last * 100 if spread is not None and ticker.last else None)

    async def candles(self, symbol: str, timeframe: str, limit: int, since: int | None = None) -> list[Candle]:
        market = await self.market(symbol)
        tf = await self.timeframe(timeframe)
        self.check_range("limit", limit, 1, MAX_CANDLES)
        if since is not None and since > self._now_ms():
            raise InvalidInput("since is in the future", hint="Give a past time (ms since epoch or ISO-8601).")
        tf_seconds = TIMEFRAME_SECONDS[tf]

        def ttl(rows: list[Candle]) -> float:
            return ohlcv_ttl(tf_seconds, int(rows[-1][0]) if rows else None, self._now_ms())

        return await self._cached(("ohlcv", market.symbol, tf, limit, since), ttl,
                                  lambda: self.source.ohlcv(market.symbol, tf, limit, since))

    async def ohlcv(self, symbol: str, timeframe: str, limit: int, since: int | None = None) -> OhlcvReport:
        rows = await self.candles(symbol, timeframe, limit, since)
        market, tf = await self.market(symbol), await self.timeframe(timeframe)
        now = self._now_ms()
        open_candle = bool(rows) and rows[-1][0] + TIMEFRAME_SECONDS[tf] * 1000 > now
        return OhlcvReport(**self.stamp(now), symbol=market.symbol, timeframe=tf, rows=rows,
                           count=len(rows), last_candle_open=open_candle)

    async def order_book(self, symbol: str, depth: int) -> OrderBookReport:
        market = await self.market(symbol)
        self.check_range("depth", depth, 1, MAX_DEPTH)
        local = self.streams.latest("book", market.symbol, BOOK_TTL * 5) if self.streams else None
        if local is not None and min(len(local.bids), len(local.asks)) >= depth:
            book, streamed = local.top(depth), True
        else:
            book = await self._cached(("book", market.symbol, depth), BOOK_TTL,
                                      lambda: self.source.order_book(market.symbol, depth))
            streamed = False
        best_bid = book.bids[0][0] if book.bids else None
        best_ask = book.asks[0][0] if book.asks else None
        mid = (best_bid + best_ask) / 2 if best_bid is not None and best_ask is not None else None
        spread = best_ask - best_bid if best_bid is not None and best_ask is not None else None
        bid_depth = sum(a for _, a in book.bids)
        ask_depth = sum(a for _, a in book.asks)
        total = bid_depth + ask_depth
        return OrderBookReport(
            **self.stamp(book.timestamp), **book.model_dump(), mid=mid, spread=spread,
            spread_pct=spread / mid * 100 if spread is not None and mid else None,
            bid_depth=bid_depth, ask_depth=ask_depth,
            imbalance=round((bid_depth - ask_depth) / total, 4) if total else None, streamed=streamed,
        )

    async def trades(self, symbol: str, limit: int) -> TradesReport:
        market = await self.market(symbol)
        self.check_range("limit", limit, 1, MAX_TRADES)
        trades = await self._cached(("trades", market.symbol, limit), TRADES_TTL,
                                    lambda: self.source.trades(market.symbol, limit))
        return TradesReport(**self.stamp(), symbol=market.symbol, trades=trades)

    async def derivatives(self, symbol: str) -> DerivativesReport:
        market = await self.market(symbol)
        data = await self._cached(("derivatives", market.symbol), DERIVATIVES_TTL,
                                  lambda: self.source.derivatives(market.symbol))
        return DerivativesReport(**self.stamp(), **data.model_dump())

    async def list_markets(self, quote: str | None, search: str | None, limit: int) -> MarketsReport:
        self.check_range("limit", limit, 1, 1000)
        markets = list((await self.all_markets()).values())
        if quote:
            markets = [m for m in markets if m.quote == quote.strip().upper()]
        if search:
            needle = search.strip().upper()
            markets = [m for m in markets if needle in m.symbol.upper() or needle in m.base.upper()]
        markets.sort(key=lambda m: (not m.active, m.type != "spot", m.symbol))
        return MarketsReport(**self.stamp(), total=len(markets), markets=markets[:limit])

    def health(self) -> ComponentHealth:
        cache = self.cache.snapshot()
        metrics: dict[str, float | int | str | None] = {f"cache_{k}": v for k, v in cache.items()}
        detail = f"{self.exchange}{' (simulated)' if self.source.simulated else ''}"
        if self._last_error:
            return ComponentHealth(name="market_data", status="degraded",
                                   detail=f"{detail}; last request failed: {self._last_error}", metrics=metrics)
        return ComponentHealth(name="market_data", status="ok", detail=detail, metrics=metrics)


def suggest_symbols(wanted: str, symbols: list[str], count: int = 3) -> list[str]:
    compact: dict[str, str] = {}
    for symbol in sorted(symbols, key=lambda s: ":" in s):  # a spot market wins over its perpetual
        compact.setdefault(symbol.replace("/", "").split(":")[0], symbol)
    key = wanted.replace("/", "").split(":")[0]
    found = [compact[k] for k in compact if k.startswith(key) or key.startswith(k)]
    found += [compact[k] for k in difflib.get_close_matches(key, list(compact), n=count, cutoff=0.75)]
    found += difflib.get_close_matches(wanted, symbols, n=count, cutoff=0.75)
    ranked = sorted(dict.fromkeys(found), key=lambda s: (":" in s, not s.endswith("/USDT"),
                                                         -difflib.SequenceMatcher(None, wanted, s).ratio()))
    return ranked[:count]


def parse_since(value: int | str | None) -> int | None:
    """A start time as ms since the epoch, from ms, seconds, or an ISO-8601 string.

    Raises:
        InvalidInput: the value is none of those.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"cannot read since={value!r} as a time",
                                   hint="Use ISO-8601 like '2024-05-01T00:00:00Z' or ms since the epoch.") from None
            return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    if value < 0:
        raise InvalidInput("since must not be negative")
    return value * 1000 if value < 100_000_000_000 else value  # 11+ digits are ms; fewer are seconds
