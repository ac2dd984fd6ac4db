"""The queue on PostgreSQL (ratios against references measured in the same run).

- claim + complete, one task at a time, on PostgreSQL vs the same work as bare statements on the
  same server (an indexed claim ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``
  and a complete, one transaction each) — what our queue costs over the engine itself;
- the same on PostgreSQL vs on SQLite: what moving to the shared engine costs one worker;
- publish one task per transaction on PostgreSQL vs a bare insert per transaction.

``HEABLCOIN_BENCH_DATABASE_URL`` names the server (default: the local one); every run uses a schema
of its own, dropped after.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.storage import Database, PostgresDatabase
from heablcoin_mcp.core.tasks.queue import TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec

URL = os.environ.get("HEABLCOIN_BENCH_DATABASE_URL", "postgresql://127.0.0.1:5432/test")
PAYLOAD = {"seconds": 0}


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _drain(queue: TaskQueue) -> None:
    while (task := queue.claim("bench")) is not None:
        queue.complete(task.id, "bench", {})


def rows(count: int = 2000) -> list[tuple[str, float, str, float]]:
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(URL, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{URL}{'&' if '?' in URL else '?'}options={quote(f'-csearch_path={schema}')}"
    try:
        pg = PostgresDatabase(url)
        pg.migrate()
        queue = TaskQueue(pg, SystemClock())
        publish = _timed(lambda: [queue.publish([TaskSpec("system.sleep", PAYLOAD)]) for _ in range(count)])
        ours = _timed(lambda: _drain(queue))

        bare = psycopg.connect(url, autocommit=True)
        bare.execute("CREATE TABLE jobs (id BIGSERIAL PRIMARY KEY, payload TEXT, priority INT, status TEXT, "
                     "worker TEXT)")
        bare.execute("CREATE INDEX jobs_claim ON jobs (priority DESC, id) WHERE status = 'PENDING'")

        def bare_inserts() -> None:
            for _ in range(count):
                with bare.transaction():
                    bare.execute("INSERT INTO jobs (payload, priority, status) VALUES (%s, 2, 'PENDING')",
                                 ('{"seconds": 0}',))

        def bare_drain() -> None:
            while True:
                with bare.transaction():
                    row = bare.execute("UPDATE jobs SET status = 'RUNNING', worker = 'bench' WHERE id = (SELECT id "
                                       "FROM jobs WHERE status = 'PENDING' ORDER BY priority DESC, id LIMIT 1 "
                                       "FOR UPDATE SKIP LOCKED) RETURNING id").fetchone()
                if row is None:
                    return
                with bare.transaction():
                    bare.execute("UPDATE jobs SET status = 'COMPLETED' WHERE id = %s", (row[0],))

        bare_publish = _timed(bare_inserts)
        bare_claims = _timed(bare_drain)
        bare.close()
        pg.close()
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()

    with tempfile.TemporaryDirectory() as home:
        sqlite = Database(Path(home) / "q.db")
        sqlite.migrate()
        local = TaskQueue(sqlite, SystemClock())
        local.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(count)])
        on_sqlite = _timed(lambda: _drain(local))
        sqlite.close()

    return [
        (f"PG claim+complete {count}", ours, "bare PG SKIP LOCKED", bare_claims),
        (f"PG claim+complete {count}", ours, "ours on SQLite", on_sqlite),
        (f"PG publish {count}, one per txn", publish, "bare PG insert per txn", bare_publish),
    ]
