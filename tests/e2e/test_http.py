from __future__ import annotations

import json
import socket
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


BAD_HOSTS = ["127.0.0.1:1@evil.com", "127.0.0.1:80.evil.com", "localhost.evil.com", "127.0.0.1:abc",
             "evil.com#127.0.0.1", "127.0.0.1 evil.com", "[::1]x", "127.0.0.1:"]
BAD_ORIGINS = ["http://127.0.0.1:60331.evil.com", "http://localhost.evil.com", "http://127.0.0.1@evil.com",
               "http://127.0.0.1:1/../evil", "null", "ftp://127.0.0.1", "http://evil.com?127.0.0.1",
               "http://127.0.0.1:99999"]


def test_a_host_or_origin_that_only_starts_like_loopback_is_refused(http_server: Callable[..., str]) -> None:
    url = http_server("streamable-http") + "/mcp"
    hosts = {h: httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": h}).status_code for h in BAD_HOSTS}
    origins = {o: httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": o}).status_code
               for o in BAD_ORIGINS}
    assert hosts == dict.fromkeys(BAD_HOSTS, 421)
    assert origins == dict.fromkeys(BAD_ORIGINS, 403)


def test_loopback_hosts_and_origins_on_any_port_are_accepted(http_server: Callable[..., str]) -> None:
    base = http_server("streamable-http")
    port = base.rsplit(":", 1)[1]
    for host, origin in ((f"127.0.0.1:{port}", "http://localhost:6274"), (f"localhost:{port}", "http://127.0.0.1"),
                         (f"[::1]:{port}", "https://[::1]:443")):
        answer = httpx.post(base + "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Host": host, "Origin": origin})
        assert answer.status_code == 200, (host, origin, answer.text)


def test_an_empty_token_is_no_token(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER, "serve", "--transport", "streamable-http", "--host", "0.0.0.0"],
                          env=server_env(tmp_path, HEABLCOIN_AUTH_TOKEN="  "), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "HEABLCOIN_AUTH_TOKEN" in done.stderr


def raw_status(base: str, authorization: bytes) -> int:
    """POST initialize with exactly these Authorization bytes (clients refuse to send some of them)."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps(INITIALIZE).encode()
    request = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Accept: application/json, text/event-stream\r\nAuthorization: " + authorization +
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        return int(conn.recv(64).split(b" ")[1])


def test_a_malformed_authorization_header_is_401(http_server: Callable[..., str]) -> None:
    base = http_server("streamable-http", HEABLCOIN_AUTH_TOKEN=TOKEN)
    malformed = [b"Bearer ", b"Bearer", b"", b"bearer " + TOKEN[:-1].encode(), b"Basic xyz", "Bearer é".encode()]
    assert [raw_status(base, a) for a in malformed] == [401] * len(malformed)
    assert raw_status(base, f"Bearer {TOKEN}".encode()) == 200


def test_a_connection_that_never_finishes_its_headers_is_closed(http_server: Callable[..., str]) -> None:
    base = http_server("streamable-http", HEABLCOIN_HTTP_HEADER_TIMEOUT="1")
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and nothing more
        slow.settimeout(10)
        assert slow.recv(1024) == b""  # the server hung up
