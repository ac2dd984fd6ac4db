"""Another process holding the database's write lock is contention, not a bug and never a crash."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket

pytestmark = pytest.mark.anyio


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Hold the write lock the way another process would (its own connection, BEGIN IMMEDIATE)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.rollback()
        other.close()


def contended_app(tmp_path: Path) -> App:
    clock = ManualClock()
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim", db_busy_timeout=0.2,  # type: ignore[call-arg]
                        worker_concurrency=1, task_poll_interval=0.05)
    return App(settings, clock=clock, market_source=ScriptedMarket(clock))


async def test_a_write_while_another_process_holds_the_lock_is_a_retryable_busy_error(tmp_path: Path) -> None:
    app = contended_app(tmp_path)
    async with Client(build_server(app)) as client:
        with write_lock_held(app.db.path):
            blocked = error_envelope(await client.call_tool("set_risk_limits", {"reason": "tighten",
                                                                                "max_order_notional": 100}))
            preview = error_envelope(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy",
                                                                            "amount": 0.1}))
        after = await client.call_tool("set_risk_limits", {"reason": "tighten", "max_order_notional": 100})
    assert blocked["code"] == preview["code"] == "busy" and blocked["retryable"] is True
    assert "Retry" in blocked["hint"]
    assert after.is_error is False and str(app.risk.limits().max_order_notional) == "100"


async def test_the_worker_survives_a_held_lock_and_resumes(tmp_path: Path) -> None:
    app = contended_app(tmp_path)
    async with app:
        published = app.tasks.publish(app.tasks.spec("fetch_data", {"symbol": "BTC/USDT", "limit": 2}))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                with write_lock_held(app.db.path):
                    tg.start_soon(app.worker.run)
                    await anyio.sleep(1.0)  # several claims and maintenance rounds meet the lock
                while app.queue.get(published.task.id).status != "COMPLETED":
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
    assert app.queue.get(published.task.id).attempts == 1
