"""`heablcoin-mcp migrate-db --to postgresql://…` moves a used SQLite database up, ids kept, and
the server on PostgreSQL carries on where the SQLite one stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.books import journal
from heablcoin_mcp.core.storage.copy import TABLES
from heablcoin_mcp.server import build_server
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket
from tests.services import postgres_schema

pytestmark = pytest.mark.anyio


def make_app(home: Path, clock: ManualClock, database_url: str | None = None) -> App:
    settings = Settings(_env_file=None, home=home, exchange="sim", worker_concurrency=0,  # type: ignore[call-arg]
                        database_url=database_url)
    return App(settings, clock=clock, market_source=ScriptedMarket(clock, price=100.0))


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    return dict(result.structured_content)


def migrate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEABLCOIN_HOME": str(home)}
    env.pop("HEABLCOIN_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "heablcoin_mcp", "migrate-db", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def snapshot(app: App) -> dict[str, Any]:
    conn = app.db.conn
    return {
        "balances": sorted(tuple(r) for r in conn.execute("SELECT account, asset, free, locked FROM balances")),
        "orders": sorted(tuple(r) for r in conn.execute("SELECT id, status, filled, avg_price, fee FROM orders")),
        "journal": [tuple(r) for r in conn.execute("SELECT seq, event, detail FROM journal ORDER BY seq")],
        "tasks": sorted(tuple(r) for r in conn.execute("SELECT id, seq, status, pending_parents FROM tasks")),
        "edges": sorted(tuple(r) for r in conn.execute("SELECT parent, child FROM task_edges")),
        "limits": sorted(tuple(r) for r in conn.execute("SELECT key, value FROM risk_overrides")),
    }


async def test_a_used_database_moves_to_postgresql_and_carries_on(tmp_path: Path, clock: ManualClock) -> None:
    home = tmp_path / "home"
    before = make_app(home, clock)
    async with Client(build_server(before)) as client:
        token = data(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 2}))
        data(await client.call_tool("confirm_order", {"token": token["confirmation_token"]}))
        resting = data(await client.call_tool("place_order", {"symbol": "BTC/USDT", "side": "buy", "amount": 1,
                                                              "order_type": "limit", "price": 90}))
        data(await client.call_tool("confirm_order", {"token": resting["confirmation_token"]}))
        parent = data(await client.call_tool("publish_enhanced_task", {"name": "system.sleep",
                                                                        "payload": {"seconds": 0}}))
        data(await client.call_tool("publish_enhanced_task", {"name": "system.sleep", "payload": {"seconds": 0},
                                                               "depends_on": [parent["task"]["id"]]}))
        data(await client.call_tool("set_risk_limits", {"max_order_notional": 400, "reason": "smaller"}))
        portfolio = data(await client.call_tool("get_portfolio", {}))
    expected = snapshot(before)
    await before.aclose()
    assert len(expected["journal"]) >= 4 and len(expected["edges"]) == 1

    with postgres_schema() as url:
        moved = migrate(home, "--to", url)
        assert moved.returncode == 0, moved.stderr
        assert "verified" in moved.stdout and "journal" in moved.stdout
        assert "password" not in moved.stdout
        after = make_app(tmp_path / "elsewhere", clock, database_url=url)
        async with Client(build_server(after)) as client:
            assert snapshot(after) == expected
            assert data(await client.call_tool("get_portfolio", {}))["balances"] == portfolio["balances"]
            open_orders = data(await client.call_tool("get_orders", {"status": "open"}))["orders"]
            stats = data(await client.call_tool("get_enhanced_task_stats", {}))
        assert stats["stats"]["by_status"] == {"PENDING": 2}
        assert [o["type"] for o in open_orders] == ["limit"]
        with after.db.write() as conn:  # ids go on after the copied ones
            journal.append(conn, clock.now(), "note", text="after the move")
        assert after.db.conn.execute("SELECT max(seq) FROM journal").fetchone()[0] == expected["journal"][-1][0] + 1
        await after.aclose()

        again = migrate(home, "--to", url)
        assert again.returncode == 2 and "already holds data" in again.stderr


def test_a_bad_target_or_a_missing_source_is_one_clear_line(tmp_path: Path) -> None:
    refused = migrate(tmp_path, "--to", "mysql://somewhere/db")
    assert refused.returncode == 2 and "postgresql://" in refused.stderr and "Traceback" not in refused.stderr
    missing = migrate(tmp_path / "nothing-here", "--to", "postgresql://127.0.0.1/test")
    assert missing.returncode == 2 and "no database at" in missing.stderr


def test_every_table_of_the_schema_is_copied(tmp_path: Path) -> None:
    from heablcoin_mcp.core.storage import Database

    db = Database(tmp_path / "x.db")
    db.migrate()
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                                            "LIKE 'sqlite_%'")}
    db.close()
    assert tables == {*TABLES, "task_counts"}
