"""A fixed scripted market replayed through the paper broker: every fill is compared with one
computed by hand (price, time, fee), whether the matcher runs every minute or catches up once after
a restart.

The market: last 100, book levels 0.1 / 0.2 / 0.5 away (5, 5, 10 coins), tick 0.01, maker 0.1 %,
taker 0.2 %, slippage 5 bps. Orders placed at 00:10 of minute M0; then, minute by minute:
  M1 low 98 (a touch of the 98 buy limit)   M2 low 97.99 (through it by a tick)
  M3 opens at 96, low 95 (gaps through the 97 sell stop)
  M4 high 103 (a touch of the 103 sell limit)   M5 high 103.01 (through it)
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from mcp import Client

from heablcoin_mcp.core.books import ledger
from heablcoin_mcp.server import build_server
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket
from tests.integration.test_trading_tools import answering, data, make_app

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
MINUTE = 60
SLIP, MAKER, TAKER = D("0.0005"), D("0.001"), D("0.002")


@pytest.mark.parametrize("matching", ["every minute", "once after a restart"])
async def test_every_fill_of_a_scripted_session_is_the_hand_computed_one(
        tmp_path: Path, clock: ManualClock, matching: str) -> None:
    market = ScriptedMarket(clock, price=100.0)
    clock.advance(MINUTE - clock.now() % MINUTE + 10)
    m0 = clock.now() - 10
    minute = [m0 + k * MINUTE for k in range(7)]
    script = {1: {"high": 100, "low": 98}, 2: {"high": 100, "low": 97.99}, 3: {"high": 96.5, "low": 95, "open": 96},
              4: {"high": 103, "low": 100}, 5: {"high": 103.01, "low": 100}}
    for k, candle in script.items():
        market.spike(int(minute[k] * 1000), **candle)

    app = make_app(tmp_path / "home", clock, market)
    ids = {}
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        for name, order in [
            ("market buy", {"side": "buy", "amount": 2}),
            ("limit buy", {"side": "buy", "amount": 1, "order_type": "limit", "price": 98}),
            ("stop sell", {"side": "sell", "amount": 1, "order_type": "stop", "stop_price": 97}),
            ("limit sell", {"side": "sell", "amount": 1, "order_type": "limit", "price": 103}),
        ]:
            ids[name] = data(await client.call_tool("place_order", {"symbol": "BTC/USDT", **order}))["order"]["id"]
        placed_at = clock.now()
        if matching == "every minute":
            for k in range(1, 7):
                clock.advance(minute[k] + 1 - clock.now())
                await app.matcher.match_open_orders()
    if matching == "once after a restart":
        clock.advance(minute[6] + 1 - clock.now())
        app = make_app(tmp_path / "home", clock, market)
        async with Client(build_server(app)):
            await app.matcher.match_open_orders()

    expected = {  # order: (price, time, fee, liquidity), each by hand from the script above
        "market buy": (D("100.1"), placed_at, D("100.1") * 2 * TAKER, "taker"),
        "limit buy": (D(98), minute[2], D(98) * MAKER, "maker"),
        "stop sell": (D(96) * (1 - SLIP), minute[3], D(96) * (1 - SLIP) * TAKER, "taker"),
        "limit sell": (D(103), minute[5], D(103) * MAKER, "maker"),
    }
    fills = {fill.order_id: fill for fill in app.records.trades(limit=10)}
    got = {name: (D(fills[ids[name]].price), fills[ids[name]].ts, D(fills[ids[name]].fee), fills[ids[name]].liquidity)
           for name in ids}
    assert got == expected
    usdt = ledger.holding(app.db.conn, "default", "USDT")
    cash = D(10_000) - D("200.2") - D(98) + D(96) * (1 - SLIP) + D(103) - sum(fee for _, _, fee, _ in expected.values())
    assert usdt.free + usdt.locked == cash and usdt.locked == 0
    assert ledger.holding(app.db.conn, "default", "BTC").total == D(1)
