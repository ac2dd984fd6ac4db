"""Two servers on one database behave as one (SQLite: one file on one host; PostgreSQL: one
database for many hosts): a token from one is confirmable on the other and single-use across both,
HALTED on one halts the other, a limit set on one applies on the other at the next call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
BUY_ONE = {"symbol": "BTC/USDT", "side": "buy", "amount": 1}


def server(home: Path, clock: ManualClock) -> App:
    settings = Settings(_env_file=None, home=home, exchange="sim", worker_concurrency=0)  # type: ignore[call-arg]
    return App(settings, clock=clock, market_source=ScriptedMarket(clock, price=100.0))


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    return dict(result.structured_content)


async def test_a_token_from_one_server_is_spent_once_across_both(tmp_path: Path, clock: ManualClock) -> None:
    one, other = server(tmp_path, clock), server(tmp_path, clock)
    async with Client(build_server(one)) as a, Client(build_server(other)) as b:
        token = data(await a.call_tool("place_order", BUY_ONE))["confirmation_token"]
        answers: list[Any] = [None, None]

        async def confirm(client: Client, slot: int) -> None:
            answers[slot] = await client.call_tool("confirm_order", {"token": token})

        async with anyio.create_task_group() as tg:  # the same yes, sent to both servers at once
            tg.start_soon(confirm, a, 0)
            tg.start_soon(confirm, b, 1)
        orders = data(await b.call_tool("get_orders", {"status": "all"}))["orders"]
    executed = [r for r in answers if not r.is_error]
    refused = [error_envelope(r) for r in answers if r.is_error]
    assert len(executed) == 1 and len(refused) == 1
    assert refused[0]["code"] == "invalid_input" and "already used" in refused[0]["message"]
    assert len(orders) == 1 and orders[0]["status"] == "filled"
    fills = one.db.conn.execute("SELECT count(*) FROM fills").fetchone()[0]
    assert fills == 1


async def test_halting_one_server_halts_the_other_and_limits_are_shared(tmp_path: Path, clock: ManualClock) -> None:
    one, other = server(tmp_path, clock), server(tmp_path, clock)
    async with Client(build_server(one)) as a, Client(build_server(other)) as b:
        data(await a.call_tool("set_risk_limits", {"max_order_notional": 50, "reason": "smaller orders"}))
        capped = error_envelope(await b.call_tool("place_order", BUY_ONE))
        assert capped["code"] == "risk_rejected" and "NOTIONAL_EXCEEDS_MAX" in capped["details"]["codes"]
        data(await a.call_tool("set_trading_state", {"state": "HALTED", "reason": "stop everything"}))
        halted = error_envelope(await b.call_tool("place_order", {**BUY_ONE, "amount": "0.1"}))
        seen = data(await b.call_tool("get_risk_parameters", {}))
    assert seen["state"]["state"] == "HALTED" and float(seen["limits"]["max_order_notional"]) == 50
    assert halted["code"] == "risk_rejected" and "TRADING_HALTED" in halted["details"]["codes"]
