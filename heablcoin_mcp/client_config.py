"""`heablcoin-mcp client-config CLIENT`: the block to paste into a desktop client, ready to use.

A pasted config that names a bare `heablcoin-mcp` fails with `spawn heablcoin-mcp ENOENT` when the
command lives in a virtual environment the client does not know. The block names the absolute
path of the command that is running now (or this Python with `-m heablcoin_mcp`); with
``uvx_source`` it names uvx instead, which runs the server from that source (a path or a git URL)
without installing it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

CLIENTS = ("claude", "cursor", "windsurf", "vscode")
CONFIG_FILES = {
    "claude": ("macOS: ~/Library/Application Support/Claude/claude_desktop_config.json; "
               "Windows: %APPDATA%\\Claude\\claude_desktop_config.json; "
               "Linux: ~/.config/Claude/claude_desktop_config.json"),
    "cursor": "~/.cursor/mcp.json (every system), or .cursor/mcp.json in a project",
    "windsurf": "~/.codeium/windsurf/mcp_config.json (Windows: %USERPROFILE%\\.codeium\\windsurf\\mcp_config.json)",
    "vscode": ".vscode/mcp.json in the workspace, or run 'MCP: Open User Configuration' for your user",
}


def launch_command() -> list[str]:
    """How a client starts this very installation: the console script beside this Python, else -m."""
    script = Path(sys.executable).parent / ("heablcoin-mcp.exe" if sys.platform == "win32" else "heablcoin-mcp")
    if script.exists():
        return [str(script.absolute())]
    found = shutil.which("heablcoin-mcp")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "heablcoin_mcp"]


def uvx_command(source: str) -> list[str]:
    """uvx by absolute path when it is on this PATH: desktop clients often start with a shorter one."""
    uvx = shutil.which("uvx")
    return [str(Path(uvx).absolute()) if uvx else "uvx", "--from", source, "heablcoin-mcp"]


def config_block(client: str, *, sim: bool, uvx_source: str | None = None) -> dict[str, object]:
    """The JSON the client's config file takes for this server.

    Raises:
        ValueError: an unknown client.
    """
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; one of {', '.join(CLIENTS)}")
    command, *args = uvx_command(uvx_source) if uvx_source else launch_command()
    env = {"HEABLCOIN_TRADING_MODE": "paper", **({"HEABLCOIN_EXCHANGE": "sim"} if sim else {})}
    server: dict[str, object] = {"command": command, "args": [*args, "serve"], "env": env}
    if client == "vscode":
        return {"servers": {"heablcoin": {"type": "stdio", **server}}}
    return {"mcpServers": {"heablcoin": server}}


def render(client: str, *, sim: bool, uvx_source: str | None = None) -> tuple[str, str]:
    """(the JSON block for stdout, where it goes for stderr)."""
    where = (f"Paste into {CONFIG_FILES[client]} (merge with any servers already there), then restart the "
             f"client.{'' if sim else ' Add HEABLCOIN_EXCHANGE=sim to the env block to try it offline.'}")
    return json.dumps(config_block(client, sim=sim, uvx_source=uvx_source), indent=2), where
