"""Prometheus metrics from the real command: `/metrics` on streamable HTTP behind the bearer token,
and `worker --metrics-port`; read back with prometheus_client's own parser."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.storage import open_storage
from heablcoin_mcp.core.tasks.queue import TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec
from tests.e2e.conftest import SERVER, free_port, server_env, wait_for_port

TOKEN = "test-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.anyio
async def test_metrics_count_tool_calls_by_outcome_behind_the_token(http_server: Callable[..., str]) -> None:
    base = http_server("streamable-http", HEABLCOIN_AUTH_TOKEN=TOKEN)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    with anyio.fail_after(60):
        async with http, Client(streamable_http_client(base + "/mcp", http_client=http)) as client:
            await client.call_tool("get_ticker", {"symbol": "BTC/USDT"})
            await client.call_tool("get_ticker", {"symbol": "NOPE/USDT"})
            await client.call_tool("get_ticker", {"symbol": "BTC/USDT"})
    assert httpx.get(base + "/metrics").status_code == 401  # the same token as the MCP endpoint
    scraped = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    calls = "heablcoin_tool_calls_total"
    assert found[(calls, frozenset({("tool", "get_ticker"), ("outcome", "ok")}))] == 2
    assert found[(calls, frozenset({("tool", "get_ticker"), ("outcome", "not_found")}))] == 1
    assert found[("heablcoin_tool_call_seconds_count", frozenset({("tool", "get_ticker")}))] == 3
    assert found[("heablcoin_exchange_requests_total", frozenset({("exchange", "sim"), ("outcome", "ok")}))] >= 1
    assert found[("heablcoin_database_up", frozenset({("engine", "sqlite")}))] == 1
    assert TOKEN not in scraped.text


def test_a_worker_serves_queue_depth_and_task_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = open_storage(None, home / "heablcoin.db")
    db.migrate()
    queue = TaskQueue(db, SystemClock())
    queue.publish([TaskSpec(name="system.sleep", payload={"seconds": 0}) for _ in range(3)])
    port = free_port()
    worker = subprocess.Popen([*SERVER, "worker", "--metrics-port", str(port)],
                              env=server_env(home, HEABLCOIN_TASK_POLL_INTERVAL="0.05"), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, worker)
        found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for _ in range(400):
            found = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            if found.get(("heablcoin_tasks", frozenset({("status", "COMPLETED"), ("priority", "NORMAL")}))) == 3:
                break
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.communicate(timeout=15)
        db.close()
    assert found[("heablcoin_tasks", frozenset({("status", "COMPLETED"), ("priority", "NORMAL")}))] == 3
    runs = found[("heablcoin_task_runs_total", frozenset({("task", "system.sleep"), ("outcome", "completed")}))]
    assert runs == 3
    assert found[("heablcoin_task_claim_seconds_count", frozenset())] >= 3
