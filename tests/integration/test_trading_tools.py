from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.books import journal
from heablcoin_mcp.core.books.models import OrderRequest
from heablcoin_mcp.errors import ExchangeUnavailable
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
BUY_ONE = {"symbol": "BTC/USDT", "side": "buy", "amount": 1}


def make_app(home: Path, clock: ManualClock, market: ScriptedMarket, **settings: Any) -> App:
    values = {"exchange": "sim", **settings}
    return App(Settings(_env_file=None, home=home, **values), clock=clock, market_source=market)  # type: ignore[call-arg]


@pytest.fixture
def market(clock: ManualClock) -> ScriptedMarket:
    return ScriptedMarket(clock, price=100.0)


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock, market: ScriptedMarket) -> App:
    return make_app(tmp_path / "home", clock, market)


def answering(confirm: bool | None) -> Callable[..., Any]:
    async def callback(context: Any, params: Any) -> ElicitResult:
        if confirm is None:
            return ElicitResult(action="decline")
        return ElicitResult(action="accept", content={"confirm": confirm})

    return callback


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    return dict(result.structured_content)


def error(result: Any) -> dict[str, Any]:
    return error_envelope(result)


def events(app: App) -> list[str]:
    return [e.event for e in reversed(journal.recent(app.db, limit=500))]


def count_orders(app: App) -> int:
    return int(app.db.conn.execute("SELECT count(*) FROM orders").fetchone()[0])


async def test_without_elicitation_place_order_only_previews(app: App) -> None:
    async with Client(build_server(app)) as client:
        outcome = data(await client.call_tool("place_order", BUY_ONE))
    assert outcome["status"] == "confirmation_required"
    assert outcome["confirmation_token"].startswith("cfm_")
    preview = outcome["preview"]
    assert preview["allowed"] is True and preview["amount"] == "1" and preview["mode"] == "paper"
    assert D(preview["expected_price"]) == D("100.1")  # the best ask
    assert count_orders(app) == 0 and "intent" not in events(app)


async def test_confirm_journals_the_intent_before_the_fill(app: App) -> None:
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", BUY_ONE))["confirmation_token"]
        outcome = data(await client.call_tool("confirm_order", {"token": token}))
        portfolio = data(await client.call_tool("get_portfolio", {}))
    order = outcome["order"]
    assert (outcome["status"], order["status"], order["filled"]) == ("executed", "filled", "1")
    assert D(order["avg_price"]) == D("100.1") and D(order["fee"]) == D("100.1") * D("0.002")
    log = events(app)
    assert log.index("intent") < log.index("filled")
    balances = {b["asset"]: b for b in portfolio["balances"]}
    assert balances["BTC"]["total"] == "1"
    assert D(balances["USDT"]["total"]) == D(10_000) - D("100.1") - D("0.2002")


async def test_tokens_are_single_use_expire_and_must_exist(app: App, clock: ManualClock) -> None:
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", BUY_ONE))["confirmation_token"]
        data(await client.call_tool("confirm_order", {"token": token}))
        assert error(await client.call_tool("confirm_order", {"token": token}))["code"] == "invalid_input"
        stale = data(await client.call_tool("place_order", {**BUY_ONE, "amount": 2}))["confirmation_token"]
        clock.advance(61)
        expired = error(await client.call_tool("confirm_order", {"token": stale}))
        assert expired["code"] == "invalid_input" and "expired" in expired["message"]
        assert (
            error(await client.call_tool("confirm_order", {"token": "cfm_made_up_by_the_model"}))["code"] == "not_found"
        )
    assert count_orders(app) == 1 and "expired" in events(app)


async def test_a_token_executes_exactly_the_order_it_was_issued_for(app: App) -> None:
    async with Client(build_server(app)) as client:
        small = data(await client.call_tool("place_order", {**BUY_ONE, "amount": "0.5"}))["confirmation_token"]
        big = data(await client.call_tool("place_order", {**BUY_ONE, "amount": 3}))["confirmation_token"]
        again = data(await client.call_tool("place_order", {**BUY_ONE, "amount": "0.5"}))["confirmation_token"]
        assert again == small and big != small  # the same order asked twice gets the same token
        outcome = data(await client.call_tool("confirm_order", {"token": small}))
    assert outcome["order"]["amount"] == "0.5"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_elicitation_yes_places_and_no_sends_nothing(app: App, mode: str) -> None:
    server = build_server(app)
    async with Client(server, mode=mode, elicitation_callback=answering(True)) as client:  # type: ignore[arg-type]
        placed = data(await client.call_tool("place_order", BUY_ONE))
    assert placed["status"] == "executed" and placed["order"]["status"] == "filled"
    async with Client(server, mode=mode, elicitation_callback=answering(False)) as client:  # type: ignore[arg-type]
        declined = data(await client.call_tool("place_order", {**BUY_ONE, "amount": 2}))
    async with Client(server, mode=mode, elicitation_callback=answering(None)) as client:  # type: ignore[arg-type]
        refused = data(await client.call_tool("place_order", {**BUY_ONE, "amount": 3}))
    assert declined["status"] == refused["status"] == "declined"
    assert count_orders(app) == 1 and events(app).count("declined") == 2


async def test_a_client_order_id_never_makes_a_second_order(app: App) -> None:
    order = {**BUY_ONE, "client_order_id": "my-order-1"}
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", order))["confirmation_token"]
        first = data(await client.call_tool("confirm_order", {"token": token}))["order"]
        again = data(await client.call_tool("place_order", order))
    assert again["status"] == "existing" and again["order"]["id"] == first["id"]
    assert again["confirmation_token"] is None and count_orders(app) == 1


async def test_risk_rejections_come_back_with_every_code(app: App) -> None:
    async with Client(build_server(app)) as client:
        rejected = error(await client.call_tool("place_order", {**BUY_ONE, "amount": 50}))
    assert rejected["code"] == "risk_rejected"
    assert "NOTIONAL_EXCEEDS_MAX" in rejected["details"]["codes"]
    assert count_orders(app) == 0 and "risk_rejected" in events(app)


async def test_halting_cancels_open_orders_and_only_the_user_can_resume(app: App) -> None:
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", {**BUY_ONE, "order_type": "limit", "price": 90}))[
            "confirmation_token"
        ]
        resting = data(await client.call_tool("confirm_order", {"token": token}))["order"]
        assert resting["status"] == "open"
        halted = data(await client.call_tool("set_trading_state", {"state": "HALTED", "reason": "panic"}))
        assert [o["id"] for o in halted["cancelled_orders"]] == [resting["id"]]
        blocked = error(await client.call_tool("place_order", BUY_ONE))
        assert "TRADING_HALTED" in blocked["details"]["codes"]
        resume = error(await client.call_tool("set_trading_state", {"state": "ACTIVE", "reason": "model"}))
        assert resume["code"] == "confirmation_required"
    portfolio = await app.portfolio.portfolio("default", "paper")
    assert {b.asset: b.locked for b in portfolio.balances}["USDT"] == "0"  # the limit's funds came back
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        resumed = data(await client.call_tool("set_trading_state", {"state": "ACTIVE", "reason": "user"}))
    assert resumed["state"]["state"] == "ACTIVE"


async def test_a_limit_locks_funds_and_fills_when_traded_through(
    app: App, market: ScriptedMarket, clock: ManualClock
) -> None:
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", {**BUY_ONE, "order_type": "limit", "price": 95}))[
            "confirmation_token"
        ]
        order = data(await client.call_tool("confirm_order", {"token": token}))["order"]
    locked = D(95) * (1 + D("0.001"))
    assert (await app.portfolio.portfolio("default", "paper")).balances[-1].locked == str(locked)
    clock.advance(120)
    assert await app.matcher.match_open_orders() == 0  # nothing traded at 95 yet
    market.spike(int(clock.now() * 1000), high=100, low=94.5)
    assert await app.matcher.match_open_orders() == 1
    filled = app.records.order(order["id"])
    assert (filled.status, filled.avg_price, filled.fee) == ("filled", "95", str(D(95) * D("0.001")))
    assert app.records.trades()[0].liquidity == "maker"


async def test_after_a_restart_the_matcher_catches_up_from_candles(
    tmp_path: Path, clock: ManualClock, market: ScriptedMarket
) -> None:
    first = make_app(tmp_path / "home", clock, market)
    async with Client(build_server(first)) as client:
        token = data(await client.call_tool("place_order", {**BUY_ONE, "order_type": "limit", "price": 97}))[
            "confirmation_token"
        ]
        order_id = data(await client.call_tool("confirm_order", {"token": token}))["order"]["id"]
    clock.advance(3600)  # the server was down for an hour; the market dipped to 96 meanwhile
    market.spike(int((clock.now() - 1800) * 1000), high=100, low=96)
    second = make_app(tmp_path / "home", clock, market)
    async with Client(build_server(second)):
        await second.matcher.match_open_orders()
        assert second.records.order(order_id).status == "filled"
        assert second.records.order(order_id).avg_price == "97"


async def test_a_stop_triggers_and_fills_with_slippage(app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        data(await client.call_tool("place_order", BUY_ONE))
        stop = data(
            await client.call_tool(
                "place_order",
                {"symbol": "BTC/USDT", "side": "sell", "amount": 1, "order_type": "stop", "stop_price": 90},
            )
        )["order"]
    clock.advance(60)
    market.spike(int(clock.now() * 1000), high=100, low=89)
    await app.matcher.match_open_orders()
    filled = app.records.order(stop["id"])
    assert filled.status == "filled"
    assert D(filled.avg_price or "0") == D(90) * (1 - D(5) / D(10_000))  # 5 bps of default paper slippage


async def test_take_profit_fill_cancels_the_stop_and_pnl_adds_up(
    app: App, market: ScriptedMarket, clock: ManualClock
) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        placed = data(await client.call_tool("place_order", {**BUY_ONE, "stop_loss": 90, "take_profit": 110}))
        assert [o["type"] for o in placed["attached"]] == ["stop", "limit"]
        clock.advance(60)
        market.spike(int(clock.now() * 1000), high=111, low=100)
        await app.matcher.match_open_orders()
        orders = {o["type"]: o for o in data(await client.call_tool("get_orders", {"status": "all"}))["orders"]}
        report = data(await client.call_tool("get_pnl_report", {"period": "all"}))
    assert orders["limit"]["status"] == "filled" and orders["stop"]["status"] == "cancelled"
    entry_fee, exit_fee = D("100.1") * D("0.002"), D(110) * D("0.001")
    assert D(report["realized_pnl"]) == D(110) - D("100.1")
    assert D(report["fees"]) == entry_fee + exit_fee
    assert D(report["net_pnl"]) == D(110) - D("100.1") - entry_fee - exit_fee
    assert (report["trades"], report["closing_trades"], report["wins"], report["win_rate_pct"]) == (2, 1, 1, "100.0")


async def test_a_losing_round_trip_shows_in_the_drawdown(app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        data(await client.call_tool("place_order", {**BUY_ONE, "amount": 5}))
        market.set_price(80)
        clock.advance(5)  # past the order-book and ticker cache
        data(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "sell", "amount": 5}))
        report = data(await client.call_tool("get_pnl_report", {}))
    loss = (D("79.9") - D("100.1")) * 5 - (D("100.1") + D("79.9")) * 5 * D("0.002")
    assert D(report["net_pnl"]) == loss
    assert report["losses"] == 1 and report["win_rate_pct"] == "0.0"
    assert report["max_drawdown_pct"] == f"{-loss / D(10_000) * 100:.2f}"


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"amount": -1}, "invalid_input"),
        ({"amount": 0}, "invalid_input"),
        ({"amount": "NaN"}, "invalid_input"),
        ({"amount": "inf"}, "invalid_input"),
        ({"amount": "a lot"}, "invalid_input"),
        ({"side": "hold"}, "invalid_input"),
        ({"order_type": "fok"}, "invalid_input"),
        ({"amount_unit": "lots"}, "invalid_input"),
        ({"order_type": "limit"}, "invalid_input"),
        ({"order_type": "stop", "price": 5}, "invalid_input"),
        ({"account": "nobody"}, "not_found"),
        ({"symbol": "BTCUSD"}, "not_found"),
        ({"amount": 10**12}, "risk_rejected"),
        ({"side": "sell", "stop_loss": 90}, "invalid_input"),
        ({"stop_loss": 150}, "risk_rejected"),
        ({"client_order_id": "bad id with spaces"}, "invalid_input"),
    ],
)
async def test_nonsense_orders_get_clear_errors_and_send_nothing(
    app: App, arguments: dict[str, Any], code: str
) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        result = await client.call_tool("place_order", {**BUY_ONE, **arguments})
    assert error(result)["code"] == code
    assert count_orders(app) == 0


async def test_position_size_follows_the_formula_and_explains_shrinking(app: App) -> None:
    async with Client(build_server(app)) as client:
        size = data(
            await client.call_tool(
                "calculate_position_size",
                {"symbol": "BTC/USDT", "entry_price": 100, "stop_price": 95, "risk_percent": "0.2"},
            )
        )
        capped = data(
            await client.call_tool(
                "calculate_position_size", {"symbol": "BTC/USDT", "entry_price": 100, "stop_price": 99}
            )
        )
        wrong = error(
            await client.call_tool(
                "calculate_position_size", {"symbol": "BTC/USDT", "entry_price": 100, "stop_price": 101}
            )
        )
    multiplier = D(size["risk_multiplier"])  # the scripted market is flat: LOW_VOLATILITY, x1.2
    assert size["regime"] == "LOW_VOLATILITY" and multiplier == D("1.2")
    assert D(size["quantity"]) == D(10_000) * D("0.2") / 100 * multiplier / 5
    assert size["reasons"] == [] and size["tradable"] is True
    assert D(capped["quantity"]) == D(10)  # 1000 USDT per order at 100
    assert any("maximum notional" in r for r in capped["reasons"])
    assert wrong["code"] == "invalid_input"


async def test_risk_limits_tighten_freely_and_loosen_only_with_the_user(app: App) -> None:
    async with Client(build_server(app)) as client:
        tight = data(await client.call_tool("set_risk_limits", {"reason": "careful", "max_order_notional": 50}))
        assert tight["applied"] is True and tight["limits"]["max_order_notional"] == "50"
        loose = error(await client.call_tool("set_risk_limits", {"reason": "yolo", "max_order_notional": 900}))
        assert loose["code"] == "confirmation_required"
        ceiling = error(await client.call_tool("set_risk_limits", {"reason": "x", "max_order_notional": 10**6}))
        assert ceiling["code"] == "invalid_input"
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(False)) as client:
        declined = data(await client.call_tool("set_risk_limits", {"reason": "yolo", "max_order_notional": 900}))
    assert declined["applied"] is False and app.risk.limits().max_order_notional == D(50)
    async with Client(build_server(app), elicitation_callback=answering(True)) as client:
        accepted = data(await client.call_tool("set_risk_limits", {"reason": "user", "max_order_notional": 900}))
    assert accepted["applied"] is True and app.risk.limits().max_order_notional == D(900)


async def test_resources_show_limits_portfolio_and_journal(app: App) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        data(await client.call_tool("place_order", BUY_ONE))
        limits = json.loads((await client.read_resource("heablcoin://risk/limits")).contents[0].text)  # type: ignore[union-attr]
        portfolio = json.loads((await client.read_resource("heablcoin://portfolio/default")).contents[0].text)  # type: ignore[union-attr]
        entries = json.loads((await client.read_resource("heablcoin://journal/recent")).contents[0].text)  # type: ignore[union-attr]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        checklist = await client.get_prompt("pre_trade_checklist", {"symbol": "ETH/USDT", "side": "buy"})
    assert limits["state"]["state"] == "ACTIVE" and limits["limits"]["max_order_notional"] == "1000"
    assert {b["asset"] for b in portfolio["balances"]} == {"BTC", "USDT"}
    assert [e["event"] for e in entries][:2] == ["filled", "intent"]
    assert {"pre_trade_checklist", "post_trade_review"} <= prompts
    assert "calculate_position_size ETH/USDT" in checklist.messages[0].content.text  # type: ignore[union-attr]


async def test_the_model_cannot_answer_for_the_user(app: App) -> None:
    """The confirmation is injected by the server from the client's UI; arguments cannot forge it."""
    forged = {"answer": {"action": "accept", "content": {"confirm": True}}, "confirm": True}
    async with Client(build_server(app)) as client:
        placed = data(await client.call_tool("place_order", {**BUY_ONE, **forged}))
        data(await client.call_tool("set_risk_limits", {"reason": "careful", "max_order_notional": 50}))
        loosened = error(await client.call_tool("set_risk_limits", {"reason": "x", "max_order_notional": 900,
                                                                    **forged}))
        ok_halt = data(await client.call_tool("set_trading_state", {"state": "HALTED", "reason": "drill"}))
        resumed = error(await client.call_tool("set_trading_state", {"state": "ACTIVE", "reason": "x", **forged}))
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert placed["status"] == "confirmation_required" and count_orders(app) == 0
    assert loosened["code"] == "confirmation_required" and app.risk.limits().max_order_notional == D(50)
    assert ok_halt["state"]["state"] == "HALTED" and resumed["code"] == "confirmation_required"
    for name in ("place_order", "set_risk_limits", "set_trading_state", "distribute_order"):
        assert "answer" not in tools[name].input_schema.get("properties", {})


async def test_an_order_a_dead_process_left_new_is_settled_and_journaled(app: App, clock: ManualClock) -> None:
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", BUY_ONE))["confirmation_token"]
        with app.db.write() as conn:  # what a process killed right after journaling the intent leaves behind
            conn.execute("INSERT INTO orders (id, account, client_order_id, symbol, side, type, amount, status, "
                         "checked_until, created_at, updated_at) VALUES ('ord_dead', 'default', 'hb-dead', "
                         "'BTC/USDT', 'buy', 'market', '1', 'new', 0, ?, ?)", (clock.now(), clock.now()))
        await app.matcher.match_open_orders()
        assert app.records.order("ord_dead").status == "new"  # it may still be in flight
        clock.advance(121)
        await app.matcher.match_open_orders()
        settled = app.records.order("ord_dead")
        confirmed = await client.call_tool("confirm_order", {"token": token})
    assert settled.status == "failed" and "nothing was filled" in (settled.reason or "")
    assert "failed" in events(app)
    assert error(confirmed)["code"] == "invalid_input"  # that token expired meanwhile: the user is asked again


async def test_a_failure_after_the_intent_marks_the_order_failed_and_keeps_the_token_spent(
        app: App, market: ScriptedMarket, clock: ManualClock) -> None:
    async with Client(build_server(app)) as client:
        token = data(await client.call_tool("place_order", BUY_ONE))["confirmation_token"]
        stored = app.db.conn.execute("SELECT request FROM confirmations WHERE token = ?", (token,)).fetchone()[0]
        priced = await app.orders.pricer.price(OrderRequest.model_validate_json(stored))

        async def gone(symbol: str, depth: int = 20) -> Any:
            raise ExchangeUnavailable("the book is gone")

        market.order_book = gone  # type: ignore[method-assign]
        clock.advance(5)  # past the cached book: the fill needs a fresh one, and the exchange is gone
        with pytest.raises(ExchangeUnavailable):
            await app.orders.executor.execute(priced, token)
        again = error(await client.call_tool("confirm_order", {"token": token}))
    orders = app.records.orders("all")
    assert [o.status for o in orders] == ["failed"] and "the book is gone" in (orders[0].reason or "")
    assert "already used" in again["message"]  # the yes was spent on that order; it is not replayed
