"""Traps a model falls into with risk limits and orders: a percentage sent for a fraction, a tightening
it cannot take back, a sell of coins the account does not hold, and what a person types."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import anyio
import pytest
from mcp import Client

from heablcoin_mcp import cli
from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.integration.test_trading_tools import answering, data, error

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]


async def test_a_percentage_for_a_fraction_is_refused_with_the_fraction_to_send(app: App) -> None:
    async with Client(build_server(app)) as client:
        slip = error(await client.call_tool("set_risk_limits", {"reason": "20 %", "max_position_fraction": 20}))
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert slip["code"] == "invalid_input" and "not a percentage" in slip["message"]
    assert "pass 0.2" in slip["hint"] and "Only the user" not in slip["hint"]
    assert app.risk.limits().max_position_fraction == app.risk.configured.max_position_fraction
    described = tools["set_risk_limits"].input_schema["properties"]
    assert "0.2 = 20 %" in str(described["max_position_fraction"])
    assert "1 = 1 %" in str(described["risk_per_trade_pct"])


async def test_a_tightened_limit_and_a_denial_are_undone_only_with_the_user(app: App) -> None:
    configured = app.risk.configured.max_order_notional
    async with Client(build_server(app)) as client:  # this client cannot ask the user
        data(await client.call_tool("set_risk_limits", {"reason": "careful", "max_order_notional": 50,
                                                        "deny_symbols_add": ["ETH/*"]}))
        refused = error(await client.call_tool("set_risk_limits", {"reason": "undo",
                                                                   "reset": ["max_order_notional"]}))
        assert refused["code"] == "confirmation_required" and "risk reset" in refused["hint"]
        denied = error(await client.call_tool("place_order", {"symbol": "ETH/USDT", "side": "buy", "amount": 0.1}))
        assert "SYMBOL_NOT_ALLOWED" in str(denied)
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(False)) as client:
        declined = data(await client.call_tool("set_risk_limits", {"reason": "undo", "reset": ["max_order_notional"]}))
    assert declined["applied"] is False and app.risk.limits().max_order_notional == D(50)
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        undone = data(await client.call_tool("set_risk_limits", {"reason": "undo", "reset": ["max_order_notional"],
                                                                  "deny_symbols_remove": ["eth/usdt"]}))
        bogus = error(await client.call_tool("set_risk_limits", {"reason": "x", "reset": ["max_fun"]}))
    assert undone["applied"] is True and app.risk.limits().max_order_notional == configured
    assert app.risk.limits().symbol_allowed("ETH/USDT")
    # Back at the configured value means no override is left to shadow a later change of the setting.
    overrides = app.db.conn.execute("SELECT key FROM risk_overrides").fetchall()
    assert "max_order_notional" not in [row[0] for row in overrides]
    assert bogus["code"] == "invalid_input" and "max_order_notional" in bogus["hint"]


async def test_a_configured_denial_cannot_be_lifted_by_a_tool(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home", exchange="sim",  # type: ignore[call-arg]
                        risk_deny_symbols=("DOGE/*",))
    async with Client(build_server(App(settings)), mode="legacy", elicitation_callback=answering(True)) as client:
        refused = error(await client.call_tool("set_risk_limits",
                                               {"reason": "x", "deny_symbols_remove": ["DOGE/USDT"]}))
    assert refused["code"] == "invalid_input" and "denied by the configuration" in refused["message"]
    assert "HEABLCOIN_RISK_DENY_SYMBOLS" in refused["hint"]


def test_the_cli_resets_limits_and_allows_symbols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEABLCOIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEABLCOIN_EXCHANGE", "sim")

    async def tighten() -> None:
        async with App(cli.load_settings()) as app:
            planned = app.risk.plan_limit_changes({"max_order_notional": "40"}, ["SOL/*"])
            app.risk.apply_limit_changes(planned, "careful")

    async def limits() -> tuple[D, bool]:
        async with App(cli.load_settings()) as app:
            return app.risk.limits().max_order_notional, app.risk.limits().symbol_allowed("SOL/USDT")

    anyio.run(tighten)
    assert cli.main(["risk", "allow", "sol/usdt"]) == 0
    assert "SOL/*" in capsys.readouterr().out
    assert anyio.run(limits) == (D(40), True)
    assert cli.main(["risk", "reset"]) == 0
    assert "max_order_notional: 40 -> 1000" in capsys.readouterr().out
    assert anyio.run(limits) == (D(1000), True)
    assert cli.main(["risk", "allow", "BTC/USDT"]) == 2
    assert "not denied" in capsys.readouterr().err


async def test_selling_coins_the_account_does_not_hold_says_so(app: App) -> None:
    async with Client(build_server(app)) as client:
        refused = error(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "sell", "amount": 1}))
    assert "you hold no BTC on account default" in str(refused)
    assert "of equity" not in str(refused)


async def test_what_a_person_types_is_read_and_answered_in_the_canonical_form(app: App) -> None:
    async with Client(build_server(app)) as client:
        preview = data(await client.call_tool("place_order", {"symbol": "solusdt", "side": "BUY", "amount": 1,
                                                             "order_type": "Market", "amount_unit": "Base"}))
        candles = data(await client.call_tool("get_ohlcv", {"symbol": "Eth-Usdt", "timeframe": "4H", "limit": 2}))
        month_or_minute = error(await client.call_tool("get_ohlcv", {"symbol": "BTC/USDT", "timeframe": "1M"}))
        perpetual = error(await client.call_tool("get_ticker", {"symbol": "sol/usdt:usdt"}))
        halted = data(await client.call_tool("set_trading_state", {"state": "halted", "reason": "lunch"}))
        tasks = data(await client.call_tool("list_enhanced_tasks", {"status": "pending"}))
    assert preview["preview"]["symbol"] == "SOL/USDT" and preview["preview"]["side"] == "buy"
    assert candles["symbol"] == "ETH/USDT" and candles["timeframe"] == "4h"
    assert month_or_minute["code"] == "invalid_input" and "m = minute, M = month" in month_or_minute["hint"]
    # A perpetual asked on a spot-only exchange is not quietly read as the spot market.
    assert perpetual["code"] == "not_found" and "SOL/USDT" in perpetual["hint"]
    assert halted["state"]["state"] == "HALTED" and tasks["tasks"] == []
