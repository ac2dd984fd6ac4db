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
async def analysis_client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Client, str, str]]:
    if request.param == "sim":
        settings = Settings(_env_file=None, home=tmp_path, exchange="sim")  # type: ignore[call-arg]
        async with Client(build_server(App(settings, clock=ManualClock()))) as client:
            yield client, "BTC/USDT", "4h"
        return
    with running_fake_binance() as fake:
        settings = Settings(_env_file=None, home=tmp_path, exchange="binance")  # type: ignore[call-arg]
        source = CcxtMarketData("binance", api_base=fake.url, retry=RetryPolicy(attempts=1), timeout_seconds=5)
        async with Client(build_server(App(settings, market_source=source))) as client:
            yield client, "XRP/USDT", "5m"


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    data: dict[str, Any] = result.structured_content
    assert {"exchange", "symbol", "timeframe", "as_of", "simulated"} <= set(data)
    return data


async def test_market_analysis_over_mcp(analysis_client: tuple[Client, str, str]) -> None:
    client, symbol, timeframe = analysis_client
    data = ok(await client.call_tool("market_analysis", {"symbol": symbol, "timeframe": timeframe}))
    assert data["symbol"] == symbol and data["bars"] == 300
    assert 3 <= len(data["summary"]) <= 6 and symbol in data["summary"][0]
    assert data["signals"]["bias"] in {"bullish", "bearish", "neutral"}
    assert data["indicators"]["backend"] == "talib"
    assert data["simulated"] is (symbol == "BTC/USDT")


async def test_compute_indicators_accepts_strings_for_lists_and_objects(
    analysis_client: tuple[Client, str, str],
) -> None:
    client, symbol, timeframe = analysis_client
    data = ok(await client.call_tool("compute_indicators", {
        "symbol": symbol, "timeframe": timeframe, "indicators": "rsi, sma, donchian",
        "params": '{"rsi": 21, "sma": {"timeperiod": 50}}', "history": "400", "series": "3"}))
    assert set(data["indicators"]) == {"rsi", "sma", "donchian"}
    assert data["indicators"]["rsi"]["params"] == {"period": 21}
    assert len(data["indicators"]["sma"]["series"]["real"]) == 3


async def test_scan_and_regime_over_mcp(analysis_client: tuple[Client, str, str]) -> None:
    client, symbol, timeframe = analysis_client
    scan = await client.call_tool("scan_market", {"symbols": f"{symbol}, NOPE/USDT", "timeframe": timeframe,
                                                  "sort_by": "adx"})
    assert scan.is_error is False
    rows = scan.structured_content["rows"]
    assert rows[0]["symbol"] == symbol and rows[0]["error"] is None and rows[1]["error"]
    regime = ok(await client.call_tool("detect_market_regime", {"symbol": symbol, "timeframe": timeframe}))
    assert regime["regime"] in {"NORMAL", "HIGH_VOLATILITY", "LOW_VOLATILITY", "CRASH", "RALLY"}
    assert regime["reason"]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("compute_indicators", {"indicators": ["astrology"]}),
        ("compute_indicators", {"params": "{rsi: 21"}),
        ("compute_indicators", {"params": {"rsi": -3}}),
        ("compute_indicators", {"history": 10}),
        ("compute_indicators", {"series": 10**6}),
        ("market_analysis", {"swing_length": 0}),
        ("market_analysis", {"timeframe": "13m"}),
        ("scan_market", {"symbols": [], "sort_by": "change"}),
        ("scan_market", {"symbols": ["BTC/USDT"], "sort_by": "vibes"}),
        ("detect_market_regime", {"history": "many"}),
    ],
)
async def test_nonsense_gets_invalid_input(analysis_client: tuple[Client, str, str], tool: str,
                                           arguments: dict[str, Any]) -> None:
    client, symbol, timeframe = analysis_client
    arguments = {"symbol": symbol, "timeframe": timeframe, **arguments} if tool != "scan_market" else arguments
    result = await client.call_tool(tool, arguments)
    assert result.is_error is True
    assert error_envelope(result)["code"] == "invalid_input"


async def test_daily_market_brief_prompt(analysis_client: tuple[Client, str, str]) -> None:
    client, _, _ = analysis_client
    prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert "daily_market_brief" in prompts
    rendered = await client.get_prompt("daily_market_brief", {"symbols": "BTC/USDT, ETH/USDT", "timeframe": "1d"})
    text = rendered.messages[0].content.text  # type: ignore[union-attr]
    assert "scan_market" in text and "BTC/USDT, ETH/USDT" in text and "1d" in text


async def test_there_is_one_24h_change_on_every_timeframe_and_tool(analysis_client: tuple[Client, str, str]) -> None:
    """BTC once showed 6.13 % (ticker), 3.60 (4h analysis), 5.91 (1h) and 5.34 (1d scan) in one session."""
    client, symbol, charted = analysis_client
    ticker = (await client.call_tool("get_ticker", {"symbol": symbol})).structured_content
    assert ticker is not None
    changes = {"ticker": ticker["change_24h_pct"]}
    for timeframe in ("1h", "4h", "1d") if charted == "4h" else ("5m", "15m"):  # the fake has less history
        analysis = ok(await client.call_tool("market_analysis", {"symbol": symbol, "timeframe": timeframe}))
        scan = (await client.call_tool("scan_market", {"symbols": [symbol], "timeframe": timeframe})).structured_content
        assert scan is not None
        changes[f"analysis {timeframe}"] = analysis["change_24h_pct"]
        changes[f"scan {timeframe}"] = scan["rows"][0]["change_24h_pct"]
    assert len(set(changes.values())) == 1, changes
