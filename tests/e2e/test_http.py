from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import SERVER, server_env

TOKEN = "test-token-0123456789abcdef"
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "probe", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_a_public_address_without_a_token_refuses_to_start(tmp_path: Path, transport: str) -> None:
    done = subprocess.run([*SERVER, "serve", "--transport", transport, "--host", "0.0.0.0"],
                          env=server_env(tmp_path), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "HEABLCOIN_AUTH_TOKEN" in done.stderr and "0.0.0.0" in done.stderr


def test_streamable_http_needs_the_bearer_token(http_server: Callable[..., str]) -> None:
    url = http_server("streamable-http", HEABLCOIN_AUTH_TOKEN=TOKEN) + "/mcp"
    missing = httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS)
    wrong = httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Bearer nope"})
    right = httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert TOKEN not in missing.text
    assert right.status_code == 200


def test_dns_rebinding_protection_stays_on_with_a_token(http_server: Callable[..., str]) -> None:
    url = http_server("streamable-http", HEABLCOIN_AUTH_TOKEN=TOKEN) + "/mcp"
    auth = {**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(url, json=INITIALIZE, headers={**auth, "Host": "evil.example"}).status_code == 421
    assert httpx.post(url, json=INITIALIZE, headers={**auth, "Origin": "http://evil.example"}).status_code == 403


@pytest.mark.anyio
async def test_tools_list_over_streamable_http_with_the_token(http_server: Callable[..., str]) -> None:
    url = http_server("streamable-http", HEABLCOIN_AUTH_TOKEN=TOKEN) + "/mcp"
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    with anyio.fail_after(60):
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            health = await client.call_tool("get_system_health", {})
    assert "get_system_health" in names
    assert health.structured_content is not None
    assert health.structured_content["transport"] == "streamable-http"


@pytest.mark.anyio
async def test_sse_needs_the_token_and_then_lists_tools(http_server: Callable[..., str]) -> None:
    base = http_server("sse", HEABLCOIN_AUTH_TOKEN=TOKEN)
    async with httpx.AsyncClient() as http:
        assert (await http.get(base + "/sse")).status_code == 401
    with anyio.fail_after(60):
        async with Client(sse_client(base + "/sse", headers={"Authorization": f"Bearer {TOKEN}"})) as client:
            names = {t.name for t in (await client.list_tools()).tools}
    assert {"get_system_health", "validate_config", "get_ticker"} <= names
