"""The sim market streams along its one path: what a stream sends is what REST shows for that instant."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from heablcoin_mcp.core.market.orderbook import BookView
from heablcoin_mcp.core.market.sim import SimMarketData
from heablcoin_mcp.core.market.sim_streams import SimStreams
from heablcoin_mcp.core.market.streams import StreamKey
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.anyio
SYMBOL = "ETH/USDT"


async def next_after(streams: SimStreams, clock: ManualClock, kind: str, seconds: float) -> Any:
    """The stream's next update once the clock has moved ``seconds`` on from its first look."""
    result: list[Any] = []

    async def take() -> None:
        result.append(await streams.next(StreamKey(kind, SYMBOL)))  # type: ignore[arg-type]

    async with anyio.create_task_group() as group:
        group.start_soon(take)
        await anyio.sleep(0.05)  # the stream has looked at the clock once
        clock.advance(seconds)
    return result[0]


async def test_streamed_trades_are_the_tape_at_the_path_price_and_only_new_ones() -> None:
    clock = ManualClock()
    market = SimMarketData(clock)
    streams = SimStreams(market, clock, interval=0.01)
    started_ms = int(clock.now() * 1000)
    trades = await next_after(streams, clock, "trades", 30)
    assert trades and all(started_ms < t.timestamp <= started_ms + 30_000 for t in trades)
    assert all(t.price == market.price_at(SYMBOL, t.timestamp) for t in trades)
    other = SimMarketData(ManualClock(clock.now()))  # another process, asking in another order
    assert other.tape(SYMBOL, started_ms, started_ms + 30_000) == trades


async def test_streamed_ticker_book_and_candle_agree_with_rest_at_that_instant() -> None:
    clock = ManualClock()
    market = SimMarketData(clock)
    streams = SimStreams(market, clock, interval=0.01)
    ticker = await next_after(streams, clock, "ticker", 5)
    assert ticker == await market.ticker(SYMBOL)
    book = await next_after(streams, clock, "book", 5)
    assert isinstance(book, BookView) and book.top(5) == await market.order_book(SYMBOL, 5)
    assert book.nonce is not None and book.previous_nonce is not None and book.nonce > book.previous_nonce
    candles = await next_after(streams, clock, "candles", 5)
    assert candles == market.candles(SYMBOL, "1m", 1, None)
