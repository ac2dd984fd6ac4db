"""Market data from any ccxt exchange (async ccxt, public endpoints, no keys).

ccxt's exceptions are translated here, once (``translate_ccxt_error``); nothing above this module
sees a ccxt type. Network-class failures (timeouts, 5xx, 429) are retried with exponential backoff
and jitter; everything else fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio

from heablcoin_mcp.core.market.limiter import SharedExchangeLimiter
from heablcoin_mcp.core.market.models import (
    TIMEFRAME_SECONDS,
    Candle,
    Derivatives,
    MarketInfo,
    OrderBook,
    Ticker,
    Trade,
)
from heablcoin_mcp.errors import (
    ConfigError,
    ExchangeRejected,
    ExchangeUnavailable,
    HeablError,
    InvalidInput,
    NotFound,
    RateLimited,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PAGE_LIMIT = 500


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 4.0


@dataclass(frozen=True)
class Proxies:
    http: str | None = None
    https: str | None = None
    socks: str | None = None


def _unavailable_hint(exchange: str) -> str:
    return (f"Check the network or proxy settings (HEABLCOIN_HTTPS_PROXY / HEABLCOIN_SOCKS_PROXY) for {exchange}, "
            "or use the offline market with HEABLCOIN_EXCHANGE=sim.")


def translate_ccxt_error(exc: Exception, exchange: str, action: str) -> HeablError:
    """The one mapping from ccxt's exception tree to ours (most specific class first)."""
    import ccxt

    detail = f"{exchange}: {action} failed ({type(exc).__name__})"
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimited(f"{detail}: rate limited", hint="Wait a little and retry; ask for less data.")
    if isinstance(exc, ccxt.NetworkError | ccxt.BadResponse | ccxt.ExchangeClosedByUser):
        return ExchangeUnavailable(f"{detail}: exchange unreachable or not answering",
                                   hint=_unavailable_hint(exchange))
    if isinstance(exc, ccxt.OperationFailed):
        return ExchangeUnavailable(f"{detail}: the operation failed on the exchange side",
                                   hint=_unavailable_hint(exchange))
    if isinstance(exc, ccxt.BadSymbol):
        return NotFound(f"{detail}: unknown symbol", hint="Call list_markets to see valid symbols.")
    if isinstance(exc, ccxt.NotSupported):
        return InvalidInput(f"{detail}: not supported by {exchange}", hint="Try another exchange or tool.")
    if isinstance(exc, ccxt.InvalidProxySettings):
        return ConfigError(f"{detail}: invalid proxy settings", hint="Set only one of the HEABLCOIN_*_PROXY variables.")
    if isinstance(exc, ccxt.AuthenticationError):
        return ExchangeRejected(f"{detail}: authentication refused",
                                hint="Check the account's API key environment variables and permissions.")
    if isinstance(exc, ccxt.BadRequest | ccxt.ArgumentsRequired):
        return InvalidInput(f"{detail}: the exchange rejected the request", hint="Check the arguments.")
    if isinstance(exc, ccxt.BaseError):
        return ExchangeRejected(f"{detail}: the exchange refused",
                                hint="Retrying as is will not help; the server log has the exchange's own message.")
    raise TypeError(f"not a ccxt error: {type(exc).__name__}")


def _is_network_error(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, ccxt.NetworkError)


MARKET_DATA = "market-data"  # the limiter's account name for public market data requests


class CcxtMarketData:
    simulated = False

    def __init__(
        self,
        exchange_id: str,
        *,
        market_type: str = "spot",
        proxies: Proxies = Proxies(),
        timeout_seconds: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        api_base: str | None = None,
        limiter: SharedExchangeLimiter | None = None,
    ) -> None:
        """``api_base`` points every REST URL of the exchange at another host (a testnet, a
        mirror, or the loopback fake exchange in tests)."""
        self.name = exchange_id
        self.market_type = market_type
        self.proxies = proxies
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self.api_base = api_base
        self.limiter = limiter
        self._client: Any = None
        self._markets: dict[str, MarketInfo] | None = None
        self._markets_lock = anyio.Lock()

    def _exchange(self) -> Any:
        if self._client is None:
            import ccxt.async_support as ccxt_async

            client = getattr(ccxt_async, self.name)(client_config(self.market_type, self.proxies,
                                                                  self.timeout_seconds))
            if self.api_base:
                client.urls["api"] = rebase_urls(client.urls["api"], self.api_base)
            if self.limiter is not None:
                self.limiter.install(client, MARKET_DATA)
            self._client = client
        return self._client

    async def _call(self, action: str, fn: Callable[[], Awaitable[T]]) -> T:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_network_error),
                stop=stop_after_attempt(self.retry.attempts),
                wait=wait_exponential_jitter(multiplier=self.retry.initial_wait, max=self.retry.max_wait,
                                            jitter=self.retry.initial_wait),
                reraise=True,
            ):
                with attempt:
                    return await fn()
        except HeablError:
            raise
        except Exception as exc:
            import ccxt

            if not isinstance(exc, ccxt.BaseError):
                raise
            error = translate_ccxt_error(exc, self.name, action)
            log.warning("%s (%s)", error.message, str(exc)[:200])
            raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def markets(self) -> dict[str, MarketInfo]:
        async with self._markets_lock:
            if self._markets is None:
                exchange = self._exchange()
                raw = await self._call("load markets", exchange.load_markets)
                self._markets = {symbol: _market_info(exchange, m) for symbol, m in raw.items()}
        return self._markets

    async def timeframes(self) -> list[str]:
        available = self._exchange().timeframes or {}
        return [tf for tf in TIMEFRAME_SECONDS if tf in available]

    async def ticker(self, symbol: str) -> Ticker:
        raw = await self._call(f"ticker {symbol}", lambda: self._exchange().fetch_ticker(symbol))
        return ticker_of(symbol, raw)

    async def ohlcv(self, symbol: str, timeframe: str, limit: int, since: int | None = None) -> list[Candle]:
        exchange = self._exchange()
        page = self._page_limit(exchange)
        if since is None and limit <= page:
            return await self._fetch_ohlcv(symbol, timeframe, None, limit)
        tf_ms = TIMEFRAME_SECONDS[timeframe] * 1000
        if since is None:
            since = (exchange.milliseconds() // tf_ms - limit + 1) * tf_ms
        rows: list[Candle] = []
        while len(rows) < limit:
            chunk = await self._fetch_ohlcv(symbol, timeframe, since, min(page, limit - len(rows)))
            chunk = [row for row in chunk if not rows or row[0] > rows[-1][0]]
            if not chunk:
                break
            rows.extend(chunk)
            since = int(chunk[-1][0]) + tf_ms
        return rows[:limit]

    async def _fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None, limit: int) -> list[Candle]:
        rows = await self._call(f"ohlcv {symbol} {timeframe}",
                                lambda: self._exchange().fetch_ohlcv(symbol, timeframe, since, limit))
        return [[float(v) if v is not None else float("nan") for v in row[:6]] for row in rows]

    @staticmethod
    def _page_limit(exchange: Any) -> int:
        try:
            return int(exchange.features["spot"]["fetchOHLCV"]["limit"])
        except (KeyError, TypeError, ValueError):
            return DEFAULT_PAGE_LIMIT

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        raw = await self._call(f"order book {symbol}", lambda: self._exchange().fetch_order_book(symbol, depth))
        return OrderBook(
            symbol=symbol, timestamp=raw.get("timestamp") or self._exchange().milliseconds(),
            bids=[(float(p), float(a)) for p, a, *_ in raw["bids"][:depth]],
            asks=[(float(p), float(a)) for p, a, *_ in raw["asks"][:depth]],
        )

    async def trades(self, symbol: str, limit: int) -> list[Trade]:
        raw = await self._call(f"trades {symbol}", lambda: self._exchange().fetch_trades(symbol, None, limit))
        return [trade_of(t) for t in raw[-limit:]]

    async def derivatives(self, symbol: str) -> Derivatives:
        markets = await self.markets()
        contract = _perpetual_for(symbol, markets)
        if contract is None:
            reason = f"no perpetual swap for {symbol} on {self.name}"
            return Derivatives(symbol=symbol, unavailable={k: reason for k in
                                                           ("funding_rate", "open_interest", "long_short_ratio")})
        exchange = self._exchange()
        result = Derivatives(symbol=contract)
        if exchange.has.get("fetchFundingRate"):
            funding = await self._call(f"funding rate {contract}", lambda: exchange.fetch_funding_rate(contract))
            result.funding_rate = funding.get("fundingRate")
            result.next_funding_time = funding.get("fundingTimestamp") or funding.get("nextFundingTimestamp")
            result.mark_price = funding.get("markPrice")
        else:
            result.unavailable["funding_rate"] = f"{self.name} does not publish funding rates through ccxt"
        if exchange.has.get("fetchOpenInterest"):
            oi = await self._call(f"open interest {contract}", lambda: exchange.fetch_open_interest(contract))
            result.open_interest = oi.get("openInterestAmount")
            result.open_interest_value = oi.get("openInterestValue")
            if result.open_interest_value is None and result.open_interest and result.mark_price:
                result.open_interest_value = result.open_interest * result.mark_price
        else:
            result.unavailable["open_interest"] = f"{self.name} does not publish open interest through ccxt"
        if exchange.has.get("fetchLongShortRatioHistory"):
            history = await self._call(f"long/short ratio {contract}",
                                       lambda: exchange.fetch_long_short_ratio_history(contract, "5m", None, 1))
            result.long_short_ratio = history[-1].get("longShortRatio") if history else None
            if result.long_short_ratio is None:
                result.unavailable["long_short_ratio"] = "the exchange returned no recent ratio"
        else:
            result.unavailable["long_short_ratio"] = f"{self.name} does not publish a long/short ratio through ccxt"
        return result

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def client_config(market_type: str | None, proxies: Proxies, timeout_seconds: float) -> dict[str, Any]:
    """The settings every ccxt client of ours starts from (market data, streams, live brokers)."""
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_seconds * 1000)}
    if market_type is not None:
        config["options"] = {"defaultType": market_type}
    for key, value in (("httpProxy", proxies.http), ("httpsProxy", proxies.https), ("socksProxy", proxies.socks)):
        if value:
            config[key] = value
    return config


def ticker_of(symbol: str, raw: dict[str, Any]) -> Ticker:
    """A ccxt ticker (REST or stream) in our shape."""
    return Ticker(
        symbol=symbol, timestamp=raw.get("timestamp") or int(time.time() * 1000), last=raw["last"],
        bid=raw.get("bid"), ask=raw.get("ask"), high_24h=raw.get("high"), low_24h=raw.get("low"),
        open_24h=raw.get("open"), change_24h_pct=raw.get("percentage"), base_volume_24h=raw.get("baseVolume"),
        quote_volume_24h=raw.get("quoteVolume"),
    )


def trade_of(raw: dict[str, Any]) -> Trade:
    return Trade(timestamp=raw["timestamp"], side=raw.get("side"), price=float(raw["price"]),
                 amount=float(raw["amount"]))


def rebase_urls(urls: Any, base: str, schemes: tuple[str, ...] = ("http",)) -> Any:
    """Point every REST URL of a ccxt exchange at another host, keeping the paths."""
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base, schemes) for key, value in urls.items()}
    if isinstance(urls, str) and urls.startswith(schemes):
        parts = urlsplit(urls)
        return base.rstrip("/") + parts.path
    return urls


def _perpetual_for(symbol: str, markets: dict[str, MarketInfo]) -> str | None:
    if symbol in markets and markets[symbol].type == "swap":
        return symbol
    base_quote = symbol.split(":")[0]
    candidate = f"{base_quote}:{base_quote.split('/')[-1]}"
    return candidate if candidate in markets else None


def _market_info(exchange: Any, market: dict[str, Any]) -> MarketInfo:
    import ccxt

    precision = market.get("precision") or {}
    limits = market.get("limits") or {}

    def step(value: Any) -> float | None:
        if value is None:
            return None
        if exchange.precisionMode == ccxt.DECIMAL_PLACES:
            return float(10 ** -int(value))
        return float(value) if exchange.precisionMode == ccxt.TICK_SIZE else None

    return MarketInfo(
        symbol=market["symbol"], base=market.get("base") or "", quote=market.get("quote") or "",
        type=market.get("type") or "spot", active=market.get("active") is not False,
        price_tick=step(precision.get("price")), amount_step=step(precision.get("amount")),
        min_amount=(limits.get("amount") or {}).get("min"), min_notional=(limits.get("cost") or {}).get("min"),
        maker_fee=market.get("maker"), taker_fee=market.get("taker"),
    )
