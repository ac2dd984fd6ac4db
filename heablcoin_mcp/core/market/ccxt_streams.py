"""Streams from any ccxt exchange with websocket support, through ccxt.pro (shipped in ccxt).

One ccxt.pro client per exchange serves every stream; ccxt keeps the connections, sends the
subscriptions again on a new connection, answers pings and pings every ``ping_seconds`` (a
connection whose pongs stop is closed). Order books are kept by ccxt from a REST snapshot plus the
exchange's incremental updates, with the exchange's sequence and checksum rules; a gap there
arrives here as ccxt's ChecksumError / InvalidNonce and becomes BookGap.
"""

from __future__ import annotations

import logging
from typing import Any

from heablcoin_mcp.core.market.ccxt_source import (
    Proxies,
    client_config,
    rebase_urls,
    ticker_of,
    trade_of,
    translate_ccxt_error,
)
from heablcoin_mcp.core.market.orderbook import BookGap, BookView
from heablcoin_mcp.core.market.streams import StreamKey
from heablcoin_mcp.errors import InvalidInput

log = logging.getLogger(__name__)

HASH_WORDS = {"ticker": "ticker", "trades": "trade", "book": "book", "candles": "ohlcv"}  # in ccxt's hashes
UNWATCH = {"ticker": ("un_watch_ticker", "unWatchTicker"), "trades": ("un_watch_trades", "unWatchTrades"),
           "book": ("un_watch_order_book", "unWatchOrderBook")}


class CcxtStreams:
    simulated = False

    def __init__(self, exchange_id: str, *, market_type: str = "spot", proxies: Proxies | None = None,
                 timeout_seconds: float = 10.0, ping_seconds: float = 10.0, api_base: str | None = None,
                 ws_base: str | None = None) -> None:
        """``api_base`` / ``ws_base`` point the REST / websocket URLs at another host (a testnet, or
        the loopback fake exchange in tests), keeping their paths."""
        self.name = exchange_id
        self.market_type = market_type
        self.proxies = proxies or Proxies()
        self.timeout_seconds = timeout_seconds
        self.ping_seconds = ping_seconds
        self.api_base = api_base
        self.ws_base = ws_base
        self._client: Any = None
        self._nonces: dict[str, int | None] = {}

    def _exchange(self) -> Any:
        if self._client is None:
            import ccxt.pro

            factory = getattr(ccxt.pro, self.name, None)
            if factory is None:
                raise InvalidInput(f"{self.name} has no websocket streams in ccxt.pro",
                                   hint="Prices are polled instead; streams need an exchange ccxt.pro supports.")
            config = client_config(self.market_type, self.proxies, self.timeout_seconds)
            config["streaming"] = {"keepAlive": int(self.ping_seconds * 1000), "maxPingPongMisses": 2}
            client = factory(config)
            if self.api_base:
                client.urls["api"] = rebase_urls(client.urls["api"], self.api_base)
            if self.ws_base:
                client.urls["api"]["ws"] = rebase_urls(client.urls["api"]["ws"], self.ws_base, ("ws",))
            self._client = client
        return self._client

    async def next(self, key: StreamKey) -> Any:
        import ccxt

        exchange = self._exchange()
        try:
            if key.kind == "ticker":
                return ticker_of(key.symbol, await exchange.watch_ticker(key.symbol))
            if key.kind == "trades":
                return [trade_of(t) for t in await exchange.watch_trades(key.symbol)]
            if key.kind == "candles":
                return [[float(v) for v in row[:6]] for row in await exchange.watch_ohlcv(key.symbol, "1m")]
            book = await exchange.watch_order_book(key.symbol)
        except (ccxt.ChecksumError, ccxt.InvalidNonce) as exc:
            self._nonces.pop(key.symbol, None)
            raise BookGap(str(exc)[:200]) from exc
        except ccxt.BaseError as exc:
            raise translate_ccxt_error(exc, self.name, f"stream {key.kind} {key.symbol}") from exc
        previous = self._nonces.get(key.symbol)
        self._nonces[key.symbol] = book.get("nonce")
        return BookView(symbol=key.symbol, bids=book["bids"], asks=book["asks"], nonce=book.get("nonce"),
                        timestamp=book.get("timestamp"), previous_nonce=previous)

    async def drop_connection(self, key: StreamKey) -> None:
        """Close the connections carrying this symbol's streams; the next watch opens a new one."""
        exchange = self._exchange()
        for client in list(exchange.clients.values()):
            if _naming(key, (*client.futures, *client.subscriptions)):
                await client.close(1000)
                exchange.clients.pop(client.url, None)
                log.info("closed %s for a silent %s stream of %s", client.url, key.kind, key.symbol)

    async def resync(self, key: StreamKey) -> None:
        """Forget the book and its subscription: the next watch subscribes again and takes a new snapshot."""
        exchange = self._exchange()
        self._nonces.pop(key.symbol, None)
        exchange.orderbooks.pop(key.symbol, None)
        for client in exchange.clients.values():
            for name in _naming(key, client.subscriptions):
                del client.subscriptions[name]

    async def stop(self, key: StreamKey) -> None:
        exchange = self._exchange()
        method, capability = UNWATCH.get(key.kind, (None, None))
        if method and exchange.has.get(capability):
            await getattr(exchange, method)(key.symbol)
        if key.kind == "book":
            self._nonces.pop(key.symbol, None)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def _naming(key: StreamKey, hashes: Any) -> list[Any]:
    """The ccxt message / subscription hashes that name this stream's symbol and kind."""
    symbol, word = key.symbol.lower(), HASH_WORDS[key.kind]
    return [h for h in hashes if symbol in str(h).lower() and word in str(h).lower()]
