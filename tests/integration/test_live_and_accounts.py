from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from heablcoin_mcp import cli
from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.books import journal
from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, RetryPolicy
from heablcoin_mcp.core.redact import redact_logs
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.clock import ManualClock
from tests.fakes.exchange import FakeBinance, Fault, running_fake_binance
from tests.fakes.market import ScriptedMarket
from tests.services import stored_text

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
SECRET = "s3cr3t-value-never-shown-0123456789"
ENV = {"BINANCE_KEY": "fake-key", "BINANCE_SECRET": SECRET}
LIVE = {"name": "main", "exchange": "binance", "mode": "live", "api_key_env": "BINANCE_KEY",
        "secret_env": "BINANCE_SECRET"}
BUY_XRP = {"symbol": "XRP/USDT", "side": "buy", "amount": 100, "account": "main"}


def yes() -> Callable[..., Any]:
    async def callback(context: Any, params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"confirm": True})
    return callback


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with running_fake_binance() as running:
        yield running


def live_app(home: Path, fake: FakeBinance, mode: str = "live", environ: dict[str, str] | None = None) -> App:
    settings = Settings(_env_file=None, home=home, exchange="binance", trading_mode=mode,  # type: ignore[call-arg]
                        exchange_timeout=1)
    source = CcxtMarketData("binance", api_base=fake.url, retry=RetryPolicy(attempts=1), timeout_seconds=5)
    return App(settings, market_source=source, environ=ENV if environ is None else environ, live_api_base=fake.url)


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    return dict(result.structured_content)


def error(result: Any) -> dict[str, Any]:
    return error_envelope(result)


def posted_orders(fake: FakeBinance) -> int:
    return sum(1 for path, query in fake.requests if path == "/api/v3/order" and "quantity" in query)


async def test_a_live_account_in_paper_mode_sends_nothing(tmp_path: Path, fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake, mode="paper")
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", LIVE))
        refused = error(await client.call_tool("place_order", BUY_XRP))
    assert refused["code"] == "invalid_config" and "HEABLCOIN_TRADING_MODE" in refused["message"]
    assert posted_orders(fake) == 0


async def test_a_confirmed_live_order_is_signed_sent_once_and_journaled_first(tmp_path: Path,
                                                                            fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake)
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", LIVE))
        placed = ok(await client.call_tool("place_order", BUY_XRP))
        portfolio = ok(await client.call_tool("get_portfolio", {"account": "main"}))
        sold = ok(await client.call_tool("place_order", {**BUY_XRP, "side": "sell", "amount": 40}))
    assert sold["order"]["status"] == "filled"  # the coins to sell are counted from the exchange's balance
    assert fake.balances["XRP"][0] == pytest.approx(60)
    order = placed["order"]
    assert placed["status"] == "executed" and order["status"] == "filled" and order["exchange_order_id"] == "1"
    assert len(fake.created) == 2 and fake.created[0]["newClientOrderId"] == order["client_order_id"]
    assert fake.created[0]["side"] == "BUY" and fake.created[0]["quantity"] == "100"
    assert "signature" in fake.created[0]
    events = [e.event for e in reversed(journal.recent(app.db, order_id=order["id"]))]
    assert events[:2] == ["intent", "sent"]
    balances = {b["asset"]: D(b["total"]) for b in portfolio["balances"]}
    assert balances["XRP"] == 100  # read back from the exchange, not the local ledger


async def test_a_lost_answer_is_outcome_unknown_and_never_resent(tmp_path: Path, fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake)
    async with Client(build_server(app)) as client:
        ok(await client.call_tool("add_account", LIVE))
        token = ok(await client.call_tool("place_order", BUY_XRP))["confirmation_token"]
        fake.fail_next(1, Fault(stall_seconds=2.5, status=200, body="{}", path="/api/v3/order", method="POST"))
        lost = error(await client.call_tool("confirm_order", {"token": token}))
        orders = ok(await client.call_tool("get_orders", {"status": "all", "account": "main"}))["orders"]
    assert lost["code"] == "outcome_unknown" and "not be resent" in lost["hint"]
    assert orders[0]["status"] == "outcome_unknown"
    assert sum(1 for path, _ in fake.requests if path == "/api/v3/order") == 1


async def test_an_exchange_refusal_is_reported_with_its_reason(tmp_path: Path, fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake)
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", LIVE))
        fake.fail_next(1, Fault(status=400, body='{"code":-1013,"msg":"Filter failure: LOT_SIZE"}',
                                path="/api/v3/order", method="POST"))
        refused = error(await client.call_tool("place_order", BUY_XRP))
        orders = ok(await client.call_tool("get_orders", {"status": "all"}))["orders"]
    assert refused["code"] in ("exchange_rejected", "invalid_input") and "LOT_SIZE" in refused["message"]
    assert orders[0]["status"] == "rejected"


async def test_live_limit_orders_are_cancelled_on_the_exchange_and_synced(tmp_path: Path, fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake)
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", LIVE))
        resting = ok(await client.call_tool("place_order", {**BUY_XRP, "order_type": "limit", "price": "0.9"}))
        second = ok(await client.call_tool("place_order", {**BUY_XRP, "amount": 50, "order_type": "limit",
                                                            "price": "0.95"}))
        cancelled = ok(await client.call_tool("cancel_order", {"order_id": resting["order"]["id"]}))
        exchange_id = int(second["order"]["exchange_order_id"])
        fake.orders[exchange_id].update(status="FILLED", executedQty="50.00000000", cummulativeQuoteQty="47.5")
        await app.matcher.match_open_orders()
        synced = app.records.order(second["order"]["id"])
    assert cancelled["status"] == "cancelled"
    assert fake.orders[int(resting["order"]["exchange_order_id"])]["status"] == "CANCELED"
    assert (synced.status, synced.filled, synced.avg_price) == ("filled", "50", "0.95")


async def test_keys_never_leave_the_server(tmp_path: Path, fake: FakeBinance, caplog: pytest.LogCaptureFixture) -> None:
    app = live_app(tmp_path, fake)
    seen = []
    with caplog.at_level(logging.DEBUG):
        async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
            seen.append(await client.call_tool("add_account", LIVE))
            seen.append(await client.call_tool("list_accounts", {}))
            seen.append(await client.call_tool("place_order", BUY_XRP))
            seen.append(await client.call_tool("validate_config", {}))
            seen.append(await client.call_tool("get_system_health", {}))
    listed = seen[1].structured_content["accounts"]
    assert {a["name"]: a["keys_set"] for a in listed}["main"] == {"api_key_env": True, "secret_env": True}
    for result in seen:
        assert SECRET not in str(result.model_dump())
    assert SECRET not in caplog.text


async def test_a_missing_key_variable_is_named_not_shown(tmp_path: Path, fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake, environ={"BINANCE_KEY": "fake-key"})
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", LIVE))
        missing = error(await client.call_tool("get_portfolio", {"account": "main"}))
    assert missing["code"] == "invalid_config" and "BINANCE_SECRET" in missing["message"]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"name": "Bad Name!", "exchange": "sim"}, "account name"),
    ({"name": "k", "exchange": "binance", "mode": "live", "api_key_env": "sk-abc123secret"}, "NAME of an environment"),
    ({"name": "k", "exchange": "binance", "mode": "live"}, "needs api_key_env"),
    ({"name": "default", "exchange": "sim"}, "already exists"),
])
async def test_bad_accounts_are_refused(tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim")  # type: ignore[call-arg]
    async with Client(build_server(App(settings))) as client:
        refused = error(await client.call_tool("add_account", arguments))
    assert message in refused["message"]


async def test_distribution_splits_by_weight_with_one_confirmation(tmp_path: Path, clock: ManualClock) -> None:
    market = ScriptedMarket(clock, price=100.0)
    app = App(Settings(_env_file=None, home=tmp_path, exchange="sim"), clock=clock,  # type: ignore[call-arg]
              market_source=market)
    async with Client(build_server(app)) as client:
        ok(await client.call_tool("add_account", {"name": "a", "exchange": "sim", "weight": 3, "group": "desk"}))
        ok(await client.call_tool("add_account", {"name": "b", "exchange": "sim", "weight": 1, "group": "desk"}))
        batch = ok(await client.call_tool("distribute_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 2,
                                                               "strategy": "weighted", "group": "desk"}))
        assert batch["status"] == "confirmation_required" and batch["confirmation_token"].startswith("bat_")
        assert {leg["account"]: leg["share"] for leg in batch["legs"]} == {"a": "1.5", "b": "0.5"}
        assert app.db.conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
        done = ok(await client.call_tool("confirm_distribution", {"token": batch["confirmation_token"]}))
        again = error(await client.call_tool("confirm_distribution", {"token": batch["confirmation_token"]}))
    filled = {leg["account"]: leg["outcome"]["order"]["filled"] for leg in done["legs"]}
    assert filled == {"a": "1.5", "b": "0.5"} and again["code"] == "invalid_input"


async def test_risk_based_distribution_follows_free_budget(tmp_path: Path, clock: ManualClock) -> None:
    market = ScriptedMarket(clock, price=100.0)
    app = App(Settings(_env_file=None, home=tmp_path, exchange="sim"), clock=clock,  # type: ignore[call-arg]
              market_source=market)
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", {"name": "a", "exchange": "sim", "group": "desk"}))
        ok(await client.call_tool("add_account", {"name": "b", "exchange": "sim", "group": "desk"}))
        ok(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 9, "account": "a"}))
        clock.advance(5)
        batch = ok(await client.call_tool("distribute_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 4,
                                                               "strategy": "risk_based", "group": "desk"}))
    shares = {leg["account"]: D(leg["share"]) for leg in batch["legs"]}
    assert batch["status"] == "executed"
    assert shares["b"] > shares["a"] > 0  # b has its whole position budget free; a already holds BTC


def test_the_user_can_resume_trading_from_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEABLCOIN_HOME", str(tmp_path))
    monkeypatch.setenv("HEABLCOIN_EXCHANGE", "sim")
    assert cli.main(["trading-state", "halted", "--reason", "drill"]) == 0
    assert cli.main(["trading-state", "active"]) == 0
    out = capsys.readouterr().out
    assert "trading HALTED (drill)" in out and "trading ACTIVE" in out


async def test_a_live_account_never_breaks_paper_views_nor_a_whole_distribution(tmp_path: Path,
                                                                               fake: FakeBinance) -> None:
    app = live_app(tmp_path, fake, mode="paper", environ={})  # a live account whose key variables are not set
    async with Client(build_server(app)) as client:
        ok(await client.call_tool("add_account", LIVE))
        paper = ok(await client.call_tool("get_portfolio", {}))
        report = ok(await client.call_tool("get_pnl_report", {"period": "all"}))
        sizing = ok(await client.call_tool("calculate_position_size", {"symbol": "XRP/USDT", "stop_price": 0.5}))
        refused = error(await client.call_tool("get_portfolio", {"account": "main"}))
        unreadable = await client.read_resource("heablcoin://portfolio/default")
        batch = ok(await client.call_tool("distribute_order", {"symbol": "XRP/USDT", "side": "buy", "amount": 50,
                                                                "strategy": "risk_based",
                                                                "accounts": ["default", "main"]}))
    signed = [path for path, query in fake.requests if "signature" in query]
    assert paper["account"] == "default" and report["account"] == "default" and sizing["quantity"]
    assert refused["code"] == "invalid_config" and "HEABLCOIN_TRADING_MODE" in refused["message"]
    assert "default" in str(unreadable)
    legs = {leg["account"]: leg for leg in batch["legs"]}
    assert legs["default"]["outcome"]["status"] == "confirmation_required"
    assert legs["main"]["error"]["code"] == "invalid_config"
    assert signed == []


async def test_an_exchange_that_echoes_the_secret_never_gets_it_past_the_server(
        tmp_path: Path, fake: FakeBinance, caplog: pytest.LogCaptureFixture) -> None:
    app = live_app(tmp_path, fake)
    redact_logs(app.redactor)
    echoed = json.dumps({"code": -2010, "msg": f"Order rejected for key fake-key and secret {SECRET}"})
    async with Client(build_server(app), mode="legacy", elicitation_callback=yes()) as client:
        ok(await client.call_tool("add_account", LIVE))
        fake.fail_next(1, Fault(status=400, body=echoed, path="/api/v3/order", method="POST"))
        refused = await client.call_tool("place_order", BUY_XRP)
        orders = await client.call_tool("get_orders", {"status": "all"})
    stored = stored_text(app.db)
    assert refused.is_error and "[redacted]" in str(refused)
    for text in (str(refused), str(orders), stored, caplog.text):
        assert SECRET not in text
