"""What the streams are for, end to end through the MCP server: an alert fires from a streamed trade
and a resting paper order fills from one, with ccxt.pro connected to the loopback Binance (which
serves no 1m candles: the periodic checks cannot do it here, only the stream can)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, RetryPolicy
from heablcoin_mcp.core.market.ccxt_streams import CcxtStreams
from heablcoin_mcp.server import build_server
from tests.fakes.ws_exchange import FakeBinanceStreams, running_fake_streams
from tests.integration.test_stream_faults import MARKET, until
from tests.integration.test_trading_tools import answering, data

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]


@pytest.fixture
def fake() -> Iterator[FakeBinanceStreams]:
    with running_fake_streams() as streams:
        yield streams


@pytest.fixture
def app(tmp_path: Path, fake: FakeBinanceStreams) -> App:
    settings = Settings(_env_file=None, home=tmp_path / "home", exchange="binance",  # type: ignore[call-arg]
                        stream_ping_seconds=1, paper_matcher_interval=0.5, task_poll_interval=0.2)
    market = CcxtMarketData("binance", api_base=fake.rest.url, retry=RetryPolicy(attempts=1), timeout_seconds=5)
    streams = CcxtStreams("binance", api_base=fake.rest.url, ws_base=fake.ws_base, ping_seconds=1)
    return App(settings, market_source=market, stream_source=streams)


async def test_a_price_alert_fires_from_the_streamed_trade_that_crosses_it(app: App, fake: FakeBinanceStreams) -> None:
    async with Client(build_server(app), mode="legacy") as client:
        task = data(await client.call_tool("publish_enhanced_task", {
            "name": "price_alert", "payload": {"symbol": "xrpusdt", "above": 1.2, "check_every": 3600}}))["task"]
        await until(lambda: "waiting" in (app.queue.get(task["id"]).result or {}))  # checked once: 1.07
        await until(lambda: fake.subscribed("xrpusdt@trade") >= 1)
        fake.trade(MARKET, 1.19, 5.0)
        fake.trade(MARKET, 1.2013, 5.0)
        # the next check is an hour away: only the stream can fire it now
        waited = data(await client.call_tool("wait_for_task", {"task_id": task["id"], "timeout": 30}))
        health = data(await client.call_tool("get_system_health", {}))
    result = waited["task"]["result"]
    assert waited["finished"] and result["fired"] and result["source"] == "stream" and result["price"] == 1.2013
    streams = next(c for c in health["components"] if c["name"] == "streams")
    assert streams["status"] == "ok" and streams["metrics"]["trades:XRP/USDT:messages"] >= 1


async def test_a_resting_paper_limit_fills_from_a_streamed_trade_after_placement_never_before(
        app: App, fake: FakeBinanceStreams) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        data(await client.call_tool("place_order", {"symbol": "XRP/USDT", "side": "buy", "amount": 100,
                                                     "order_type": "limit", "price": 0.95}))
        order_id, created_at = app.db.conn.execute("SELECT id, created_at FROM orders").fetchone()
        await until(lambda: fake.subscribed("xrpusdt@trade") >= 1)
        fake.trade(MARKET, 0.90, 500.0, at_ms=int(created_at * 1000) - 1000)  # printed before the order existed
        fake.trade(MARKET, 0.95, 500.0)  # at the limit: touched, not traded through
        fake.trade(MARKET, 0.9450, 500.0)
        through_ms = app.clock.now()
        await until(lambda: app.db.conn.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
                    == "filled")
    fill = app.records.trades()[0]
    assert Decimal(fill.price) == Decimal("0.95") and fill.liquidity == "maker"  # the limit, not the better trade
    assert fill.ts >= through_ms - 1  # the trade that went through, not the earlier ones
