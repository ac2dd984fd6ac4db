"""Install and connect like its peers: `pipx install` and `uvx --from`, each printing a client block
that MCP Inspector's CLI starts and lists the tools from, exactly as pasted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import server_env
from tests.e2e.test_inspector import inspect

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def isolated(tmp_path: Path) -> dict[str, str]:
    """pipx and uv keep everything under tmp_path; the user's own tools and caches are not touched."""
    env = server_env(tmp_path / "unused")
    env.update(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "pipx" / "bin"),
               PIPX_MAN_DIR=str(tmp_path / "pipx" / "man"), UV_CACHE_DIR=str(tmp_path / "uv-cache"),
               UV_TOOL_DIR=str(tmp_path / "uv-tools"), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def pasted(block_text: str, tmp_path: Path, **env: str) -> Path:
    block = json.loads(block_text)
    block["mcpServers"]["heablcoin"]["env"].update(HEABLCOIN_HOME=str(tmp_path / "home"), **env)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(block))
    return path


@pytest.mark.parametrize("installer", ["pipx", "uvx"])
def test_an_installed_server_prints_a_block_the_inspector_starts(tmp_path: Path, node: str, installer: str) -> None:
    env = isolated(tmp_path)
    if installer == "pipx":
        run([str(BIN / "pipx"), "install", str(REPO)], env)
        done = run([str(tmp_path / "pipx" / "bin" / "heablcoin-mcp"), "client-config", "claude", "--sim"], env)
        server = json.loads(done.stdout)["mcpServers"]["heablcoin"]
        assert Path(server["command"]).is_relative_to(tmp_path / "pipx")  # pipx's own copy, not this venv
        config = pasted(done.stdout, tmp_path)
    else:
        done = run([str(BIN / "uvx"), "--from", str(REPO), "heablcoin-mcp", "client-config", "claude", "--sim",
                    "--uvx", str(REPO)], env)
        server = json.loads(done.stdout)["mcpServers"]["heablcoin"]
        assert server["command"] == str(BIN / "uvx") and server["args"] == ["--from", str(REPO), "heablcoin-mcp",
                                                                          "serve"]
        config = pasted(done.stdout, tmp_path, UV_CACHE_DIR=env["UV_CACHE_DIR"])
    names = {tool["name"] for tool in inspect(config, "--method", "tools/list")["tools"]}  # type: ignore[attr-defined]
    assert {"get_ticker", "place_order", "get_system_health"} <= names
