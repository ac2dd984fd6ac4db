from __future__ import annotations

import os
import sqlite3
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
    assert "scan_market on 1d candles" in out and " (1d) " in out  # each regime names its chart
    assert "on 1h, the one every risk rule uses" in out
    assert "place_order 'buy 100 USDT of SOL' → confirmation_required" in out
    assert "confirm_order → filled: buy" in out and "get_portfolio → equity" in out
    assert "wait_for_task → COMPLETED" in out and "# BTC hourly" in out
    assert "watch_market BTC/USDT for 3 s →" in out and "from the stream" in out and "progress " in out
    assert "push: resources/updated heablcoin://tasks/" in out and "(seen by a streamed trade)" in out
    assert '"code": "invalid_input"' in out
    assert not (tmp_path / "ignored").exists()  # the demo uses its own temporary home


DAMAGES = {
    "garbage": b"this is not a database at all" * 100,
    "truncated header": b"SQLite format 3\x00" + b"\x10\x00",
    "random pages": b"SQLite format 3\x00" + bytes(range(256)) * 64,
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_database_stops_serve_and_doctor_with_one_clear_line(tmp_path: Path, damage: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "heablcoin.db").write_bytes(DAMAGES[damage])
    env = server_env(home)
    served = subprocess.run([*SERVER, "serve"], env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    doctor = subprocess.run([*SERVER, "doctor"], env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert "heablcoin.db" in served.stderr and "Move the file aside" in served.stderr
    assert doctor.returncode == 1 and "heablcoin.db" in doctor.stdout


def test_a_database_from_a_newer_build_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "heablcoin.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    before = (home / "heablcoin.db").read_bytes()
    served = subprocess.run([*SERVER, "serve"], env=server_env(home), capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert served.returncode == 2 and "schema v99" in served.stderr and "Traceback" not in served.stderr
    assert (home / "heablcoin.db").read_bytes() == before


def test_a_read_only_home_is_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    try:
        served = subprocess.run([*SERVER, "serve"], env=server_env(home), capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
    finally:
        home.chmod(0o700)
    if os.geteuid() == 0:  # root writes anyway; the check still must not crash
        assert "Traceback" not in served.stderr
        return
    assert served.returncode == 2 and "HEABLCOIN_HOME" in served.stderr and "Traceback" not in served.stderr
