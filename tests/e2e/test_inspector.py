"""The printed client config works in MCP Inspector's CLI, exactly as a user would paste it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import CLIENT_DIR, SERVER, server_env

INSPECTOR = CLIENT_DIR / "node_modules" / ".bin" / "mcp-inspector"


def client_config(tmp_path: Path, client: str) -> Path:
    done = subprocess.run([*SERVER, "client-config", client, "--sim"], env=server_env(tmp_path / "unused"),
                          capture_output=True, text=True, timeout=60, check=True)
    block = json.loads(done.stdout)
    assert "claude_desktop_config.json" in done.stderr or client != "claude"
    server = block["mcpServers"]["heablcoin"]
    assert Path(server["command"]).is_absolute() and Path(server["command"]).exists()
    server["env"]["HEABLCOIN_HOME"] = str(tmp_path / "home")  # keep the test's state out of the user's home
    path = tmp_path / "config.json"
    path.write_text(json.dumps(block))
    return path


def inspect(config: Path, *args: str) -> dict[str, object]:
    done = subprocess.run([str(INSPECTOR), "--cli", "--config", str(config), "--server", "heablcoin", *args],
                          capture_output=True, text=True, timeout=120, cwd=config.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_the_printed_claude_config_lists_the_tools_in_the_inspector(tmp_path: Path, node: str) -> None:
    config = client_config(tmp_path, "claude")
    listed = inspect(config, "--method", "tools/list")
    names = {tool["name"] for tool in listed["tools"]}  # type: ignore[attr-defined, index]
    assert {"get_ticker", "place_order", "get_system_health"} <= names


def test_an_error_reads_as_the_envelope_in_the_inspector(tmp_path: Path, node: str) -> None:
    config = client_config(tmp_path, "cursor")
    failed = inspect(config, "--method", "tools/call", "--tool-name", "get_ticker", "--tool-arg", "symbol=BTCUSD")
    assert failed["isError"] is True
    error = json.loads(failed["content"][0]["text"])["error"]  # type: ignore[index]
    assert error["code"] == "not_found" and "BTC/USDT" in error["hint"]


def test_the_vscode_block_has_its_own_shape(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER, "client-config", "vscode"], env=server_env(tmp_path), capture_output=True,
                          text=True, timeout=60, check=True)
    server = json.loads(done.stdout)["servers"]["heablcoin"]
    assert server["type"] == "stdio" and server["args"][-1] == "serve"
    assert server["env"] == {"HEABLCOIN_TRADING_MODE": "paper"}
