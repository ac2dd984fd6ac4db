"""Streams of the simulated market: updates along its one deterministic price path.

Every ``interval`` seconds each stream looks at the clock and sends what the path holds up to
then: the tape's new trades, the ticker, the book, the forming 1m candle. Nothing is invented for
the stream, so a streamed price is the price the REST tools show for the same instant.
"""

from __future__ import annotations

from typing import Any

import anyio

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.orderbook import BookView
from heablcoin_mcp.core.market.sim import SimMarketData
from heablcoin_mcp.core.market.streams import StreamKey

BOOK_DEPTH = 50


class SimStreams:
    name = "sim"
    simulated = True

    def __init__(self, market: SimMarketData, clock: Clock, *, interval: float = 0.25) -> None:
        self.market = market
        self.clock = clock
        self.interval = interval
        self._until: dict[StreamKey, int] = {}  # ms: what each stream has sent up to

    async def next(self, key: StreamKey) -> Any:
        while True:
            await anyio.sleep(self.interval)
            now = int(self.clock.now() * 1000)
            sent = self._until.setdefault(key, now)
            if now <= sent:
                continue  # a clock that has not moved has nothing new
            self._until[key] = now
            if key.kind == "trades":
                if trades := self.market.tape(key.symbol, sent, now):
                    return trades
                continue  # no trade printed in this interval
            if key.kind == "ticker":
                return await self.market.ticker(key.symbol)
            if key.kind == "candles":
                return self.market.candles(key.symbol, "1m", 1, None)
            book = await self.market.order_book(key.symbol, BOOK_DEPTH)
            return BookView(symbol=key.symbol, bids=book.bids, asks=book.asks, nonce=now, timestamp=book.timestamp,
                            previous_nonce=sent)

    async def drop_connection(self, key: StreamKey) -> None:
        return None  # nothing to reconnect: the path is computed here

    async def resync(self, key: StreamKey) -> None:
        self._until.pop(key, None)

    async def stop(self, key: StreamKey) -> None:
        self._until.pop(key, None)

    async def close(self) -> None:
        self._until.clear()
