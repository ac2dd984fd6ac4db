"""Pushes from the sim market's streams, in real time: a subscribed ticker (both protocol eras,
throttled), the watch_market tool's progress notifications, the local book and the health figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import ResourceTemplateReference

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.integration.test_pushes import Inbox, legacy, subscribe, unsubscribe
from tests.integration.test_trading_tools import data

pytestmark = pytest.mark.anyio
TICKER = "heablcoin://market/BTC-USDT/ticker"


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(Settings(_env_file=None, home=tmp_path / "home", exchange="sim"))  # type: ignore[call-arg]


async def test_a_subscribed_ticker_is_pushed_at_most_once_a_second_until_unsubscribed(app: App) -> None:
    inbox = Inbox()
    async with legacy(app, inbox) as client:
        ticker = json.loads((await client.read_resource(TICKER)).contents[0].text)
        assert ticker["symbol"] == "BTC/USDT" and ticker["last"] > 0
        await subscribe(client, TICKER)
        started = anyio.current_time()
        await inbox.wait_for(lambda: inbox.updated.count(TICKER) >= 2)
        await anyio.sleep(1.5)
        window = anyio.current_time() - started
        pushed = inbox.updated.count(TICKER)
        assert pushed <= math.ceil(window) + 1  # the sim ticks four times a second: throttled to one
        health = data(await client.call_tool("get_system_health", {}))
        await unsubscribe(client, TICKER)
        await anyio.sleep(1.5)
        settled = inbox.updated.count(TICKER)
        await anyio.sleep(2.0)
        assert inbox.updated.count(TICKER) == settled  # nothing after the unsubscribe
    streams = next(c for c in health["components"] if c["name"] == "streams")
    assert streams["detail"] == "sim (simulated): 1 live" and streams["metrics"]["ticker:BTC/USDT:subscribers"] == 1


async def test_the_2026_era_hears_of_ticker_changes_over_subscriptions_listen(app: App) -> None:
    async with Client(build_server(app), mode="auto") as client, \
            client.listen(resource_subscriptions=[TICKER]) as stream:
        with anyio.fail_after(10):
            event = await stream.__anext__()
        assert event.uri == TICKER


async def test_watch_market_sends_prices_as_progress_and_sums_them_up(app: App) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async with Client(build_server(app), mode="legacy") as client:
        report = data(await client.call_tool("watch_market", {"symbols": "btcusdt, ETH/USDT", "seconds": 3},
                                             progress_callback=on_progress))
        refused = (await client.call_tool("watch_market", {"symbols": ["BTC/USDT"], "seconds": 601})).is_error
    assert report["streamed"] is True and [m["symbol"] for m in report["markets"]] == ["BTC/USDT", "ETH/USDT"]
    for watched in report["markets"]:
        assert watched["updates"] >= 1 and watched["low"] <= watched["last"] <= watched["high"]
    messages = [m for _, m in progress if m]
    assert any(m.startswith("BTC/USDT ") for m in messages) and any(m.startswith("ETH/USDT ") for m in messages)
    for symbol in ("BTC/USDT", "ETH/USDT"):  # at most one a second per market
        assert sum(m.startswith(symbol + " ") for m in messages) <= math.ceil(report["seconds"]) + 1
    assert refused


async def test_the_order_book_comes_from_the_local_book_while_it_is_streamed(app: App) -> None:
    async with Client(build_server(app), mode="legacy") as client:
        assert data(await client.call_tool("get_order_book", {"symbol": "BTC/USDT", "depth": 10}))["streamed"] is False
        assert app.streams is not None
        async with app.streams.subscribe("book", "BTC/USDT") as books:
            with anyio.fail_after(10):
                await books.receive()
            book = data(await client.call_tool("get_order_book", {"symbol": "BTC/USDT", "depth": 10}))
    assert book["streamed"] is True and len(book["bids"]) == 10 and book["bids"][0][0] < book["asks"][0][0]


async def test_market_resource_arguments_complete_in_uri_form(app: App) -> None:
    async with Client(build_server(app), mode="legacy") as client:
        ref = ResourceTemplateReference(type="ref/resource", uri="heablcoin://market/{market}/ticker")
        found: Any = await client.complete(ref, {"name": "market", "value": "btc"})
    assert "BTC-USDT" in found.completion.values


async def test_with_streams_off_a_ticker_subscription_is_refused_and_watch_market_polls(tmp_path: Path) -> None:
    app = App(Settings(_env_file=None, home=tmp_path / "home", exchange="sim", streams=False))  # type: ignore[call-arg]
    assert app.streams is None
    async with legacy(app, Inbox()) as client:
        with pytest.raises(MCPError) as refused:
            await subscribe(client, TICKER)
        report = data(await client.call_tool("watch_market", {"symbols": ["BTC/USDT"], "seconds": 2}))
        health = data(await client.call_tool("get_system_health", {}))
    assert refused.value.error.code == -32602 and "HEABLCOIN_STREAMS=false" in refused.value.error.message
    assert report["streamed"] is False and report["markets"][0]["updates"] >= 1
    assert "streams" not in [c["name"] for c in health["components"]]
