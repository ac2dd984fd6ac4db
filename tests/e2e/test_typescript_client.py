"""The real server over stdio, driven by the official TypeScript SDK client.

That client is what Claude Desktop, Cursor, VS Code and MCP Inspector embed. It validates every
result's structuredContent against the tool's outputSchema, so an error that our forgiving Python
client reads could reach a desktop user as "-32602 Structured content does not match". The npm
package is installed here, pinned in tests/e2e/ts_client/package-lock.json.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import CLIENT_DIR, SERVER, server_env


def drive(node: str, home: Path, calls: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    spec = {"command": SERVER[0], "args": SERVER[1:], "env": server_env(home), "calls": calls, **extra}
    done = subprocess.run([node, str(CLIENT_DIR / "client.mjs")], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=120, cwd=home.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def envelope(result: dict[str, Any]) -> dict[str, Any]:
    assert "thrown" not in result, result  # the client refused the result: the model would never see it
    assert result["isError"] is True, result
    error: dict[str, Any] = json.loads(result["text"])["error"]
    assert error["message"] and isinstance(error["retryable"], bool)
    return error


def test_every_error_and_a_success_reach_the_typescript_client(tmp_path: Path, node: str) -> None:
    calls = [
        {"name": "get_ticker", "arguments": {"symbol": "BTC/USDT"}},
        {"name": "get_ticker", "arguments": {"symbol": "BTCUSD"}},
        {"name": "get_ohlcv", "arguments": {"symbol": "BTC/USDT", "timeframe": "7x"}},
        {"name": "place_order", "arguments": {"symbol": "BTC/USDT", "side": "buy", "amount": 1000}},
        {"name": "get_enhanced_task", "arguments": {"task_id": "tsk_doesnotexist"}},
        {"name": "calculate_position_size", "arguments": {"symbol": "BTC/USDT", "stop_price": -5}},
        {"name": "get_system_health", "arguments": {"components": "flux-capacitor"}},
    ]
    outcome = drive(node, tmp_path / "home", calls)
    assert "place_order" in outcome["tools"]
    ticker, unknown, timeframe, risk, task, sizing, health = outcome["results"]

    assert "thrown" not in ticker and ticker["isError"] is False
    assert ticker["structuredContent"]["symbol"] == "BTC/USDT" and ticker["structuredContent"]["last"] > 0
    assert json.loads(ticker["text"]) == ticker["structuredContent"]

    assert envelope(unknown)["code"] == "not_found"
    assert "BTC/USDT" in envelope(unknown)["hint"]
    assert envelope(timeframe)["code"] == "invalid_input" and "timeframe" in envelope(timeframe)["message"]
    rejected = envelope(risk)
    assert rejected["code"] == "risk_rejected"
    assert "NOTIONAL_EXCEEDS_MAX" in rejected["details"]["codes"]
    assert envelope(task)["code"] == "not_found"
    assert envelope(sizing)["code"] == "invalid_input" and "positive" in envelope(sizing)["message"]
    assert envelope(health)["code"] == "invalid_input"


def test_streamed_prices_reach_the_typescript_client_as_progress_and_resource_updates(
        tmp_path: Path, node: str) -> None:
    ticker = "heablcoin://market/BTC-USDT/ticker"
    outcome = drive(node, tmp_path / "home", [
        {"name": "watch_market", "arguments": {"symbols": ["BTC/USDT"], "seconds": 3}},
        {"name": "watch_market", "arguments": {"symbols": ["NOPE/USDT"], "seconds": 1}},
    ], subscribe=[ticker, "heablcoin://orders/open"], listenSeconds=1)
    watched, unknown = outcome["results"]
    assert envelope(unknown)["code"] == "not_found"  # a bad watch reaches the client as a readable error
    assert "thrown" not in watched and watched["isError"] is False, watched
    assert watched["structuredContent"]["streamed"] is True
    assert watched["structuredContent"]["markets"][0]["updates"] >= 1
    assert watched["progress"] and all(m.startswith("BTC/USDT ") for m in watched["progress"])
    assert ticker in outcome["updated"]  # pushed from the stream while subscribed
    assert json.loads(outcome["read"][ticker])["symbol"] == "BTC/USDT"
    assert json.loads(outcome["read"]["heablcoin://orders/open"]) == []
