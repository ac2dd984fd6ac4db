from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.e2e.conftest import SERVER, server_env

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_installed_server_answers_health_over_stdio(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(command=SERVER[0], args=SERVER[1:], env=server_env(tmp_path / "home"),
                                   cwd=str(tmp_path))
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:  # type: ignore[arg-type]
            result = await client.call_tool("get_system_health", {})
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["trading_mode"] == "paper"
    assert result.structured_content["database"]["path"] == str(tmp_path / "home" / "heablcoin.db")
    assert (tmp_path / "home" / "heablcoin.db").exists()


def test_invalid_settings_stop_the_server_at_start_with_a_clear_message(tmp_path: Path) -> None:
    env = server_env(tmp_path / "home", HEABLCOIN_TRANSPORT="carrier-pigeon")
    done = subprocess.run([*SERVER, "serve"], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "HEABLCOIN_TRANSPORT" in done.stderr
    assert "'stdio', 'sse' or 'streamable-http'" in done.stderr
    assert done.stdout == ""


def test_demo_tours_a_real_server_and_exits_cleanly(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER, "demo"], env=server_env(tmp_path / "ignored"), capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Connected to heablcoin-mcp" in out
    assert "get_system_health → status ok" in out and "paper trading on sim (simulated)" in out
    assert "validate_config → OK" in out
    assert "get_ticker BTC/USDT → last" in out and "Did you mean BTC/USDT" in out
    assert "market_analysis BTC/USDT 4h" in out and "Signals lean" in out and "simulated data" in out
    assert "scan_market 1d" in out
    assert "place_order 'buy 100 USDT of SOL' → confirmation_required" in out
    assert "confirm_order → filled: buy" in out and "get_portfolio → equity" in out
    assert "wait_for_task → COMPLETED" in out and "# BTC hourly" in out
    assert '"code": "invalid_input"' in out
    assert not (tmp_path / "ignored").exists()  # the demo uses its own temporary home
