"""Streams from a loopback Binance that ccxt.pro really connects to, through every fault it can show:
a dropped connection, a silent feed, refused reconnects, a skipped update id and a corrupt book."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.market.ccxt_streams import CcxtStreams
from heablcoin_mcp.core.market.orderbook import BookView
from heablcoin_mcp.core.market.streams import MarketStreams, StreamPolicy
from tests.fakes.ws_exchange import FakeBinanceStreams, running_fake_streams

pytestmark = pytest.mark.anyio
SYMBOL, MARKET = "XRP/USDT", "XRPUSDT"
FAST = StreamPolicy(stale_after=2.0, initial_delay=0.05, max_delay=0.4, long_after=5, ping_seconds=1.0)


@pytest.fixture
def fake() -> Iterator[FakeBinanceStreams]:
    with running_fake_streams() as streams:
        streams.set_book(MARKET, [(0.50, 10.0), (0.49, 5.0), (0.48, 2.0)], [(0.51, 7.0), (0.52, 3.0), (0.53, 1.0)])
        yield streams


@pytest.fixture
async def hub(fake: FakeBinanceStreams) -> AsyncIterator[MarketStreams]:
    streams = MarketStreams(CcxtStreams("binance", api_base=fake.rest.url, ws_base=fake.ws_base, ping_seconds=1.0),
                            SystemClock(), FAST)
    async with anyio.create_task_group() as group:
        await group.start(streams.run)
        yield streams
        group.cancel_scope.cancel()


async def until(condition: Any, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def figures(hub: MarketStreams, kind: str) -> dict[str, Any]:
    prefix = f"{kind}:{SYMBOL}:"
    return {k.removeprefix(prefix): v for k, v in hub.health().metrics.items() if k.startswith(prefix)}


async def published_until_received(updates: Any, publish: Any) -> Any:
    """Publish until an update arrives (a new connection may still be subscribing); that update."""
    with anyio.fail_after(15):
        while True:
            publish()
            with anyio.move_on_after(0.3):
                return await updates.receive()


async def next_trade_price(updates: Any, fake: FakeBinanceStreams, price: float) -> float:
    return float((await published_until_received(updates, lambda: fake.trade(MARKET, price, 1.0)))[-1].price)


async def next_ticker(updates: Any, fake: FakeBinanceStreams, last: float) -> float:
    return float((await published_until_received(updates, lambda: fake.ticker(MARKET, last))).last)


def test_the_backoff_doubles_then_waits_long_after_five_failures() -> None:
    policy = StreamPolicy(initial_delay=1, max_delay=300, long_after=5, jitter=0.25)
    assert [policy.delay(n, 0.5) for n in range(1, 8)] == [1, 2, 4, 8, 16, 300, 300]
    assert policy.delay(3, 0.0) == 3.0 and policy.delay(3, 0.999999) == pytest.approx(5.0)


async def test_subscribers_share_one_subscription_and_each_gets_every_trade(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("trades", SYMBOL) as first, hub.subscribe("trades", SYMBOL) as second:
        await until(lambda: fake.subscribed("xrpusdt@trade") == 1)
        assert await next_trade_price(first, fake, 0.5051) == 0.5051
        assert [t.price for t in await second.receive()] == [0.5051]
        assert figures(hub, "trades")["subscribers"] == 2
    await until(lambda: not hub.health().metrics["streams"])
    assert fake.subscribed("xrpusdt@trade") == 1


async def test_the_candle_stream_carries_the_forming_minute(hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("candles", SYMBOL) as candles:
        await until(lambda: fake.subscribed("xrpusdt@kline_1m") == 1)
        rows = await published_until_received(
            candles, lambda: fake.kline(MARKET, 1_796_000_040_000, (0.5, 0.52, 0.49, 0.51, 1200.0)))
    assert rows[-1] == [1_796_000_040_000, 0.5, 0.52, 0.49, 0.51, 1200.0]


async def test_a_dropped_connection_reconnects_and_subscribes_again(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("trades", SYMBOL) as trades:
        await until(lambda: fake.subscribed("xrpusdt@trade") == 1)
        await next_trade_price(trades, fake, 0.5)
        fake.drop_connections()
        await until(lambda: fake.subscribed("xrpusdt@trade") == 2)
        assert await next_trade_price(trades, fake, 0.52) == 0.52
        seen = figures(hub, "trades")
    assert seen["reconnects"] == 1 and seen["connected"] == 1 and fake.connections == 2


async def test_a_silent_feed_is_detected_and_its_connection_replaced(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("ticker", SYMBOL) as tickers:
        await until(lambda: fake.subscribed("xrpusdt@miniTicker") == 1)
        await next_ticker(tickers, fake, 0.5)
        fake.go_silent()  # pings are still answered: only the missing messages tell
        await until(lambda: figures(hub, "ticker")["stale_reconnects"] == 1)
        assert hub.health().status == "degraded" and "no update for 2 s" in hub.health().detail
        await until(lambda: fake.subscribed("xrpusdt@miniTicker") == 2)
        assert await next_ticker(tickers, fake, 0.53) == 0.53
        assert hub.health().status == "ok" and figures(hub, "ticker")["reconnects"] == 1
    assert fake.connections == 2


async def test_a_quiet_trade_stream_is_given_longer_and_is_not_trouble(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("trades", SYMBOL) as trades:
        await until(lambda: fake.subscribed("xrpusdt@trade") == 1)
        await next_trade_price(trades, fake, 0.5)
        await anyio.sleep(FAST.stale_after * 1.5)  # silent longer than a ticker may be
        assert figures(hub, "trades")["stale_reconnects"] == 0 and hub.health().status == "ok"
        fake.go_silent()
        await until(lambda: figures(hub, "trades")["stale_reconnects"] == 1, timeout=20)
        assert hub.health().status == "ok"  # reconnected as a precaution, not reported as down
        await until(lambda: fake.subscribed("xrpusdt@trade") == 2)
        assert await next_trade_price(trades, fake, 0.52) == 0.52


async def test_refused_reconnects_back_off_and_the_stream_comes_back(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("trades", SYMBOL) as trades:
        await until(lambda: fake.subscribed("xrpusdt@trade") == 1)
        await next_trade_price(trades, fake, 0.5)
        fake.refuse_next(3)
        fake.drop_connections()
        await until(lambda: fake.refused == 3)
        assert await next_trade_price(trades, fake, 0.54) == 0.54
        seen = figures(hub, "trades")
    assert seen["failures"] == 0 and seen["reconnects"] == 1  # back, and the count of failures reset
    assert fake.subscribed("xrpusdt@trade") == 2


async def book_matches(updates: Any, fake: FakeBinanceStreams) -> BookView:
    with anyio.fail_after(15):
        while True:
            book = await updates.receive()
            bids, asks = fake.true_book(MARKET)
            if [tuple(level[:2]) for level in book.bids] == bids and [tuple(level[:2]) for level in book.asks] == asks:
                return book


async def test_a_skipped_update_id_resyncs_the_book_from_a_new_snapshot(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("book", SYMBOL) as books:
        await until(lambda: fake.snapshots == 1)
        fake.depth(MARKET, bids=[(0.495, 4.0)])
        await book_matches(books, fake)
        fake.depth(MARKET, asks=[(0.51, 0.0)], skip_id=True)  # the update before it never arrives
        await until(lambda: fake.snapshots == 2)
        book = await book_matches(books, fake)
        assert book.asks[0][0] == 0.52 and figures(hub, "book")["gaps"] == 1


async def test_a_corrupt_update_is_never_served_and_the_book_resyncs(
        hub: MarketStreams, fake: FakeBinanceStreams) -> None:
    async with hub.subscribe("book", SYMBOL) as books:
        await until(lambda: fake.snapshots == 1)
        fake.depth(MARKET, bids=[(0.497, 1.0)])
        await book_matches(books, fake)
        served: list[tuple[float, float]] = []
        fake.depth(MARKET, bids=[(0.498, 2.0)], corrupt=True)  # a bid above the best ask
        await until(lambda: fake.snapshots == 2)
        fake.depth(MARKET, asks=[(0.525, 1.0)])
        with anyio.fail_after(15):
            while True:
                book = await books.receive()
                served.append((book.bids[0][0], book.asks[0][0]))
                if [tuple(level[:2]) for level in book.asks] == fake.true_book(MARKET)[1]:
                    break
        assert all(bid < ask for bid, ask in served)
        assert figures(hub, "book")["gaps"] == 1 and figures(hub, "book")["depth"] == 4
