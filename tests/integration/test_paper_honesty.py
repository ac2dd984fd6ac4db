"""The paper broker never fills better than the market, and executes what the user confirmed.

Every expected price here is computed by hand from the scripted market (price 100, book levels
0.1 / 0.2 / 0.5 away, tick 0.01, maker 0.1 %, taker 0.2 %, slippage 5 bps).
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.core.books import ledger
from heablcoin_mcp.server import build_server
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket
from tests.integration.test_trading_tools import BUY_ONE, answering, data, error, make_app

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
SLIP = D(5) / D(10_000)
MINUTE = 60


@pytest.fixture
def market(clock: ManualClock) -> ScriptedMarket:
    return ScriptedMarket(clock, price=100.0)


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock, market: ScriptedMarket) -> App:
    return make_app(tmp_path / "home", clock, market)


def yes(app: App) -> Client:
    return Client(build_server(app), mode="legacy", elicitation_callback=answering(True))


def at_next_minute(clock: ManualClock, seconds: float = 0) -> int:
    """Move the clock to the start of the next minute (plus ``seconds``); that minute's start in ms."""
    now = clock.now()
    clock.advance(MINUTE - now % MINUTE + seconds)
    return int((clock.now() - seconds) * 1000)


@pytest.mark.parametrize(("side", "stop"), [("buy", 97), ("buy", 100.1), ("sell", 103), ("sell", 99.9)])
async def test_a_stop_on_the_wrong_side_of_the_market_is_refused(app: App, side: str, stop: float) -> None:
    async with yes(app) as client:
        if side == "sell":
            data(await client.call_tool("place_order", BUY_ONE))
        refused = error(await client.call_tool("place_order", {**BUY_ONE, "side": side, "order_type": "stop",
                                                               "stop_price": stop}))
    assert refused["code"] == "risk_rejected" and refused["details"]["codes"] == ["STOP_WOULD_TRIGGER_IMMEDIATELY"]


async def test_a_resting_order_fills_only_on_prices_after_it_was_placed(
        app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    minute = at_next_minute(clock, seconds=50)  # placed at :50
    market.spike(minute + 5_000, high=100, low=90)  # the dip at :05 of the same minute happened before
    async with yes(app) as client:
        order = data(await client.call_tool("place_order", {**BUY_ONE, "order_type": "limit", "price": 95}))["order"]
    clock.advance(5)
    assert await app.matcher.match_open_orders() == 0
    next_minute = at_next_minute(clock, seconds=20)
    market.spike(next_minute, high=100, low=94)
    assert await app.matcher.match_open_orders() == 1
    filled = app.records.order(order["id"])
    assert (filled.status, filled.avg_price) == ("filled", "95")
    assert app.records.trades()[0].ts == next_minute / 1000  # when the market traded, not when we looked


async def test_a_touch_is_not_a_fill_a_tick_through_is(app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with yes(app) as client:
        order = data(await client.call_tool("place_order", {**BUY_ONE, "order_type": "limit", "price": 95}))["order"]
    market.spike(at_next_minute(clock, seconds=1), high=100, low=95)
    assert await app.matcher.match_open_orders() == 0
    market.spike(at_next_minute(clock, seconds=1), high=100, low=94.99)
    assert await app.matcher.match_open_orders() == 1
    assert app.records.order(order["id"]).avg_price == "95"


async def test_a_stop_hit_by_a_gap_fills_at_the_gap_then_slips(
        app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with yes(app) as client:
        data(await client.call_tool("place_order", BUY_ONE))
        stop = data(await client.call_tool("place_order", {**BUY_ONE, "side": "sell", "order_type": "stop",
                                                           "stop_price": 95}))["order"]
    market.spike(at_next_minute(clock, seconds=1), high=91, low=89, open=90)
    await app.matcher.match_open_orders()
    filled = app.records.order(stop["id"])
    assert filled.status == "filled" and D(filled.avg_price or "0") == D(90) * (1 - SLIP)
    assert app.records.trades()[0].liquidity == "taker"


async def test_beyond_an_empty_book_the_slippage_is_charged_once(app: App, market: ScriptedMarket) -> None:
    market.book_levels = []
    async with Client(build_server(app)) as client:
        pending = data(await client.call_tool("place_order", BUY_ONE))
        done = data(await client.call_tool("confirm_order", {"token": pending["confirmation_token"]}))
    assert D(pending["preview"]["expected_price"]) == D(100) * (1 + SLIP)
    assert D(done["order"]["avg_price"]) == D(100) * (1 + SLIP)


async def test_a_bracket_locks_the_position_once_and_hands_the_lock_on(
        app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with yes(app) as client:
        placed = data(await client.call_tool("place_order", {**BUY_ONE, "stop_loss": 90, "take_profit": 110}))
        stop, target = placed["attached"]
        btc = ledger.holding(app.db.conn, "default", "BTC")
        assert (btc.free, btc.locked) == (D(0), D(1))
        selling = error(await client.call_tool("place_order", {**BUY_ONE, "side": "sell"}))
        assert "held by open orders" in selling["message"]
        data(await client.call_tool("cancel_order", {"order_id": stop["id"]}))  # the target still protects
        assert ledger.holding(app.db.conn, "default", "BTC").locked == D(1)
        market.spike(at_next_minute(clock, seconds=1), high=110.5, low=100)
        await app.matcher.match_open_orders()
    assert app.records.order(target["id"]).status == "filled"
    btc = ledger.holding(app.db.conn, "default", "BTC")
    assert (btc.free, btc.locked) == (D(0), D(0))


async def test_confirmation_never_grows_the_order_past_what_the_user_saw(
        app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with Client(build_server(app)) as client:  # no elicitation: preview now, confirm later
        pending = data(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 100,
                                                              "amount_unit": "quote"}))
        seen = D(pending["preview"]["amount"])
        market.set_price(99)  # cheaper now: 100 USDT would buy more than the user saw
        clock.advance(5)
        done = data(await client.call_tool("confirm_order", {"token": pending["confirmation_token"]}))
    assert seen == D("0.999")  # floor(100 / 100.1, 0.001)
    assert D(done["order"]["filled"]) == seen


async def test_drawdown_is_marked_to_market_within_the_period(
        app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with yes(app) as client:
        data(await client.call_tool("place_order", {**BUY_ONE, "amount": 5}))  # yesterday: a realised loss
        market.set_price(80)
        clock.advance(5)
        data(await client.call_tool("place_order", {**BUY_ONE, "side": "sell", "amount": 5}))
        clock.advance(86_400 - clock.now() % 86_400 + 3_600)  # 01:00 the next day
        market.set_price(100)
        data(await client.call_tool("place_order", BUY_ONE))  # today: an open loss only
        market.set_price(90)
        clock.advance(1_800)
        today = data(await client.call_tool("get_pnl_report", {"period": "day"}))
        ever = data(await client.call_tool("get_pnl_report", {"period": "all"}))
    fee = D("0.002")
    yesterday_end = D(10_000) + (D("79.9") - D("100.1")) * 5 - (D("100.1") + D("79.9")) * 5 * fee
    after_buy = yesterday_end - D("100.1") * fee
    marked = after_buy - (D("100.1") - D(90))
    assert today["max_drawdown_pct"] == f"{(yesterday_end - marked) / yesterday_end * 100:.2f}" == "0.10"
    assert today["cash_drawdown_pct"] == "0.00"
    assert ever["max_drawdown_pct"] == f"{(10_000 - marked) / 100:.2f}"  # both days' falls from the first peak
