"""One user "yes" buys one action, in both protocol eras.

On a 2026-07-28 connection an answered question travels back in the retry (`input_responses` plus
the sealed `request_state`). A client or an attacker who re-sends that retry must be asked again,
never served a second order, a second exit from HALTED or a second loosening.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, ElicitResult, InputRequiredResult

from heablcoin_mcp.app import App
from heablcoin_mcp.server import build_server
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket
from tests.integration.test_trading_tools import answering, count_orders, make_app

pytestmark = pytest.mark.anyio
Send = Callable[[], Awaitable[CallToolResult | InputRequiredResult]]


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> App:
    return make_app(tmp_path / "home", clock, ScriptedMarket(clock, price=100.0))


async def answered_retry(client: Client, tool: str, arguments: dict[str, Any], *, yes: bool = True) -> Send:
    """Ask once, answer, and hand back the answered retry so a test can send it as often as it likes."""
    first = await client.session.call_tool(tool, arguments, allow_input_required=True)
    assert isinstance(first, InputRequiredResult), first
    responses = {key: ElicitResult(action="accept", content={"confirm": yes}) for key in first.input_requests}

    async def send() -> CallToolResult | InputRequiredResult:
        return await client.session.call_tool(tool, arguments, input_responses=responses,  # type: ignore[arg-type]
                                              request_state=first.request_state, allow_input_required=True)

    return send


def structured(result: CallToolResult | InputRequiredResult) -> dict[str, Any]:
    assert isinstance(result, CallToolResult) and result.is_error is False, result
    assert result.structured_content is not None
    return result.structured_content


def asked_again(result: CallToolResult | InputRequiredResult) -> bool:
    return isinstance(result, InputRequiredResult) and bool(result.input_requests)


def modern(app: App) -> Client:
    return Client(build_server(app), mode="auto", elicitation_callback=answering(True))


@pytest.mark.parametrize("order", [
    {"symbol": "BTC/USDT", "side": "buy", "amount": 1},
    {"symbol": "BTC/USDT", "side": "buy", "amount": 1, "order_type": "limit", "price": 90},
])
async def test_a_replayed_answer_places_no_second_order(app: App, clock: ManualClock, order: dict[str, Any]) -> None:
    async with modern(app) as client:
        send = await answered_retry(client, "place_order", order)
        assert structured(await send())["status"] == "executed"
        replays = [await send() for _ in range(5)]
        clock.advance(90)
        replays.append(await send())
    assert all(asked_again(r) for r in replays), replays
    assert count_orders(app) == 1


async def test_a_replayed_answer_does_not_leave_halted_again(app: App) -> None:
    async with modern(app) as client:
        await client.call_tool("set_trading_state", {"state": "HALTED", "reason": "stop"})
        send = await answered_retry(client, "set_trading_state", {"state": "ACTIVE", "reason": "resume"})
        assert structured(await send())["state"]["state"] == "ACTIVE"
        await client.call_tool("set_trading_state", {"state": "HALTED", "reason": "stop again"})
        replay = await send()
    assert asked_again(replay)
    assert app.risk.state().state == "HALTED"


async def test_a_replayed_answer_does_not_loosen_a_limit_again(app: App) -> None:
    async with modern(app) as client:
        await client.call_tool("set_risk_limits", {"reason": "tighten", "max_order_notional": 500})
        send = await answered_retry(client, "set_risk_limits", {"reason": "loosen", "max_order_notional": 900})
        assert structured(await send())["applied"] is True
        assert str(app.risk.limits().max_order_notional) == "900"
        await client.call_tool("set_risk_limits", {"reason": "tighten again", "max_order_notional": 500})
        replay = await send()
    assert asked_again(replay)
    assert str(app.risk.limits().max_order_notional) == "500"


async def test_a_replayed_answer_places_no_second_distribution(app: App) -> None:
    async with modern(app) as client:
        await client.call_tool("add_account", {"name": "second", "mode": "paper", "exchange": "sim"})
        send = await answered_retry(client, "distribute_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 1,
                                                                 "accounts": ["default", "second"]})
        assert structured(await send())["status"] == "executed"
        replays = [await send() for _ in range(3)]
    assert all(asked_again(r) for r in replays), replays
    assert count_orders(app) == 2


async def test_each_call_in_the_2025_era_asks_the_user_once(app: App) -> None:
    questions: list[str] = []

    async def callback(context: Any, params: Any) -> ElicitResult:
        questions.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(build_server(app), mode="legacy", elicitation_callback=callback) as client:
        for _ in range(2):
            result = await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 1})
            assert structured(result)["status"] == "executed"
    assert len(questions) == 2 and count_orders(app) == 2
