from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, RetryPolicy
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.clock import ManualClock
from tests.fakes.exchange import running_fake_binance

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sim", "binance-fake"])
async def market_client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Client, str]]:
    if request.param == "sim":
        settings = Settings(_env_file=None, home=tmp_path, exchange="sim")  # type: ignore[call-arg]
        async with Client(build_server(App(settings, clock=ManualClock()))) as client:
            yield client, "BTC/USDT"
        return
    with running_fake_binance() as fake:
        settings = Settings(_env_file=None, home=tmp_path, exchange="binance")  # type: ignore[call-arg]
        source = CcxtMarketData("binance", api_base=fake.url, retry=RetryPolicy(attempts=1), timeout_seconds=5)
        async with Client(build_server(App(settings, market_source=source))) as client:
            yield client, "XRP/USDT"


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    data: dict[str, Any] = result.structured_content
    assert {"exchange", "as_of", "simulated"} <= set(data)
    return data


def error_code(result: Any) -> str:
    assert result.is_error is True
    return str(error_envelope(result)["code"])


async def test_ticker_over_mcp(market_client: tuple[Client, str]) -> None:
    client, symbol = market_client
    data = ok(await client.call_tool("get_ticker", {"symbol": symbol.lower()}))
    assert data["symbol"] == symbol and data["last"] > 0
    assert data["simulated"] is (data["exchange"] == "sim")
    assert data["spread"] is not None and data["spread"] >= 0


async def test_ohlcv_over_mcp_accepts_numbers_as_strings(market_client: tuple[Client, str]) -> None:
    client, symbol = market_client
    timeframe = "1h" if symbol == "BTC/USDT" else "5m"
    data = ok(await client.call_tool("get_ohlcv", {"symbol": symbol, "timeframe": timeframe, "limit": "30"}))
    assert data["count"] == 30 and len(data["rows"]) == 30 and len(data["rows"][0]) == 6
    assert data["last_candle_open"] is True


async def test_order_book_derivatives_and_markets_over_mcp(market_client: tuple[Client, str]) -> None:
    client, symbol = market_client
    book = ok(await client.call_tool("get_order_book", {"symbol": symbol, "depth": 5}))
    assert len(book["bids"]) == 5 and -1 <= book["imbalance"] <= 1
    derivatives = ok(await client.call_tool("get_derivatives_data", {"symbol": symbol}))
    assert derivatives["funding_rate"] is not None
    markets = ok(await client.call_tool("list_markets", {"quote": "usdt", "limit": 3}))
    assert 1 <= len(markets["markets"]) <= 3 and all(m["quote"] == "USDT" for m in markets["markets"])


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("get_ticker", {"symbol": "BTCUSD"}, "not_found"),
        ("get_ticker", {"symbol": ""}, "invalid_input"),
        ("get_ticker", {}, "invalid_input"),
        ("get_ticker", {"symbol": 42}, "invalid_input"),
        ("get_ohlcv", {"symbol": "{sym}", "timeframe": "7m"}, "invalid_input"),
        ("get_ohlcv", {"symbol": "{sym}", "limit": -1}, "invalid_input"),
        ("get_ohlcv", {"symbol": "{sym}", "limit": 10**9}, "invalid_input"),
        ("get_ohlcv", {"symbol": "{sym}", "limit": "lots"}, "invalid_input"),
        ("get_ohlcv", {"symbol": "{sym}", "since": "yesterday"}, "invalid_input"),
        ("get_ohlcv", {"symbol": "{sym}", "since": "2999-01-01"}, "invalid_input"),
        ("get_order_book", {"symbol": "{sym}", "depth": 0}, "invalid_input"),
        ("list_markets", {"limit": 100000}, "invalid_input"),
    ],
)
async def test_nonsense_gets_a_clear_error_envelope(
    market_client: tuple[Client, str], tool: str, arguments: dict[str, Any], code: str
) -> None:
    client, symbol = market_client
    arguments = {k: v.replace("{sym}", symbol) if isinstance(v, str) else v for k, v in arguments.items()}
    result = await client.call_tool(tool, arguments)
    assert error_code(result) == code
    assert error_envelope(result)["hint"] or code == "invalid_input"


async def test_the_did_you_mean_hint_reaches_the_model(market_client: tuple[Client, str]) -> None:
    client, symbol = market_client
    result = await client.call_tool("get_ticker", {"symbol": symbol.replace("/", "").replace("USDT", "USD")})
    assert f"Did you mean {symbol}" in error_envelope(result)["hint"]
