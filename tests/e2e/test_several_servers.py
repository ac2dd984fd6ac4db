"""Two `serve --transport streamable-http` processes on one database behind a round-robin balancer
(HEABLCOIN_HTTP_STATELESS=true): one MCP client, every request to the next server, works as with one
server; the order it confirms is filled once."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
TOKEN = "test-token-0123456789abcdef"


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # the 2026 protocol, and 2025's with its sessions
async def test_one_client_across_two_servers_behind_a_round_robin_balancer(http_server: Callable[..., str],
                                                                          mode: str) -> None:
    extra = {"HEABLCOIN_AUTH_TOKEN": TOKEN, "HEABLCOIN_HTTP_STATELESS": "true", "HEABLCOIN_WORKER_CONCURRENCY": "0"}
    bases = [http_server("streamable-http", **extra) for _ in range(2)]
    ports = itertools.cycle(int(base.rsplit(":", 1)[1]) for base in bases)
    served: list[int] = []

    async def balance(request: Any) -> None:  # what a load balancer does: the next server, every request
        port = next(ports)
        request.url = request.url.copy_with(port=port)
        served.append(port)

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, event_hooks={"request": [balance]})
    with anyio.fail_after(90):
        async with http, Client(streamable_http_client(bases[0] + "/mcp", http_client=http),
                                 mode=mode) as client:  # type: ignore[arg-type]
            preview = await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": "0.01"})
            token = preview.structured_content["confirmation_token"]
            confirmed = await client.call_tool("confirm_order", {"token": token})
            replayed = await client.call_tool("confirm_order", {"token": token})
            orders = await client.call_tool("get_orders", {"status": "all"})
    assert len(set(served)) == 2  # both servers answered requests of the one session
    assert confirmed.is_error is False and confirmed.structured_content["order"]["status"] == "filled"
    assert replayed.is_error is True and "already used" in replayed.content[0].text
    assert [o["status"] for o in orders.structured_content["orders"]] == ["filled"]
