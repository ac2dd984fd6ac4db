"""One contract, every MarketData implementation: the simulator and ccxt over the fake exchange."""

from __future__ import annotations

from itertools import pairwise

import pytest

from heablcoin_mcp.core.market.models import TIMEFRAME_SECONDS
from tests.contracts.conftest import SourceCase

pytestmark = pytest.mark.anyio


async def test_markets_carry_precision_and_minimums(market_case: SourceCase) -> None:
    markets = await market_case.source.markets()
    market = markets[market_case.symbol]
    assert market.base and market.quote and market.active
    assert market.price_tick is not None and 0 < market.price_tick < 1
    assert market.amount_step is not None and market.amount_step > 0
    assert market.min_notional is not None and market.min_notional > 0


async def test_ticker_is_consistent(market_case: SourceCase) -> None:
    ticker = await market_case.source.ticker(market_case.symbol)
    assert ticker.bid is not None and ticker.ask is not None
    assert ticker.bid <= ticker.last <= ticker.ask
    assert ticker.low_24h is not None and ticker.high_24h is not None
    assert ticker.low_24h <= ticker.high_24h
    assert abs(ticker.timestamp - market_case.now_ms()) < 60_000


async def test_candles_are_ordered_spaced_and_well_formed_up_to_now(market_case: SourceCase) -> None:
    tf_ms = TIMEFRAME_SECONDS[market_case.timeframe] * 1000
    rows = await market_case.source.ohlcv(market_case.symbol, market_case.timeframe, 300)
    assert len(rows) == 300
    assert all(b[0] - a[0] == tf_ms for a, b in pairwise(rows))
    assert all(r[2] >= max(r[1], r[4]) and r[3] <= min(r[1], r[4]) and r[5] >= 0 for r in rows)
    assert rows[-1][0] <= market_case.now_ms() < rows[-1][0] + tf_ms  # the newest row is the open candle


async def test_more_candles_than_one_page_are_paginated_without_gaps(market_case: SourceCase) -> None:
    tf_ms = TIMEFRAME_SECONDS[market_case.timeframe] * 1000
    rows = await market_case.source.ohlcv(market_case.symbol, market_case.timeframe, 1500)
    assert len(rows) == 1500
    assert all(b[0] - a[0] == tf_ms for a, b in pairwise(rows))


async def test_candles_since_a_time_start_there(market_case: SourceCase) -> None:
    tf_ms = TIMEFRAME_SECONDS[market_case.timeframe] * 1000
    since = (market_case.now_ms() // tf_ms - 50) * tf_ms
    rows = await market_case.source.ohlcv(market_case.symbol, market_case.timeframe, 10, since)
    assert [int(r[0]) for r in rows] == [since + i * tf_ms for i in range(10)]


async def test_order_book_is_sorted_and_not_crossed(market_case: SourceCase) -> None:
    book = await market_case.source.order_book(market_case.symbol, 10)
    assert len(book.bids) == 10 and len(book.asks) == 10
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
    assert book.bids[0][0] < book.asks[0][0]
    assert all(amount > 0 for _, amount in book.bids + book.asks)


async def test_recent_trades_are_in_the_past_and_bounded(market_case: SourceCase) -> None:
    trades = await market_case.source.trades(market_case.symbol, 25)
    assert 0 < len(trades) <= 25
    assert all(t.timestamp <= market_case.now_ms() and t.price > 0 and t.amount > 0 for t in trades)


async def test_derivatives_are_reported_for_a_symbol_with_a_perpetual(market_case: SourceCase) -> None:
    data = await market_case.source.derivatives(market_case.symbol)
    assert data.symbol.endswith(":USDT")
    assert data.funding_rate is not None and abs(data.funding_rate) < 0.01
    assert data.open_interest is not None and data.open_interest > 0
    assert data.long_short_ratio is not None and data.long_short_ratio > 0
    assert data.unavailable == {}
