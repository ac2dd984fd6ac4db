"""The storage contract, the same tests on SQLite and PostgreSQL: migrations, transactions, the
append-only journal, several processes at once, and (PostgreSQL) workers woken by NOTIFY."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from heablcoin_mcp.core.storage import MIGRATIONS, IntegrityError, Migration, Storage, open_storage
from heablcoin_mcp.core.storage.pg_migrations import PG_MIGRATIONS
from heablcoin_mcp.core.storage.postgres import PostgresDatabase, translate
from heablcoin_mcp.core.tasks.queue import TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.both_engines

COUNTING = (
    Migration(1, "log", "CREATE TABLE applied (n INTEGER);\nINSERT INTO applied VALUES (1);"),
    Migration(2, "more", "INSERT INTO applied VALUES (2);"),
)


def opened(database_url: str | None, tmp_path: Path, migrations: tuple[Migration, ...]) -> Storage:
    if database_url:
        return PostgresDatabase(database_url, migrations=migrations)
    from heablcoin_mcp.core.storage import Database

    return Database(tmp_path / "x.db", migrations=migrations)


def test_both_engines_know_the_same_migrations() -> None:
    assert [(m.version, m.name) for m in PG_MIGRATIONS] == [(m.version, m.name) for m in MIGRATIONS]


def test_migrating_twice_applies_nothing_the_second_time(database_url: str | None, tmp_path: Path) -> None:
    db = opened(database_url, tmp_path, COUNTING)
    assert db.migrate() == 2
    assert db.migrate() == 0
    assert db.schema_version() == 2
    assert [r[0] for r in db.conn.execute("SELECT n FROM applied ORDER BY n")] == [1, 2]
    db.close()


def test_a_failing_migration_leaves_the_schema_untouched(database_url: str | None, tmp_path: Path) -> None:
    broken = (*COUNTING, Migration(3, "broken", "INSERT INTO applied VALUES (3);\nSELECT * FROM nope;"))
    db = opened(database_url, tmp_path, broken)
    with pytest.raises(Exception, match="nope"):
        db.migrate()
    assert db.schema_version() == 2
    assert sorted(r[0] for r in db.conn.execute("SELECT n FROM applied")) == [1, 2]
    db.close()


def test_a_write_rolls_back_whole_and_keeps_the_original_error(storage: Storage) -> None:
    with pytest.raises(ZeroDivisionError), storage.write() as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('a', '1', 0)")
        _ = 1 / 0
    assert storage.conn.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
    with storage.write() as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?)", ("a", "50% off", 0.5))
    row = storage.conn.execute("SELECT key, value, updated_at FROM kv WHERE value LIKE '50%'").fetchone()
    assert (row["key"], row[1], row["updated_at"]) == ("a", "50% off", 0.5)
    assert dict(zip(row.keys(), row, strict=True)) == {"key": "a", "value": "50% off", "updated_at": 0.5}


def test_the_journal_refuses_updates_and_deletes(storage: Storage) -> None:
    with storage.write() as conn:
        conn.execute("INSERT INTO journal (ts, event, detail) VALUES (1, 'intent', '{}')")
    for statement in ("UPDATE journal SET event = 'forged'", "DELETE FROM journal"):
        with pytest.raises(IntegrityError, match="append-only"), storage.write() as conn:
            conn.execute(statement)
    assert [tuple(r) for r in storage.conn.execute("SELECT event, detail FROM journal")] == [("intent", "{}")]


def test_a_refused_constraint_is_the_same_error_on_both(storage: Storage) -> None:
    with storage.write() as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('a', '1', 0)")
    with pytest.raises(IntegrityError), storage.write() as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('a', '2', 0)")


MIGRATE_IN_CHILD = """
import sys
from pathlib import Path
from heablcoin_mcp.core.storage import open_storage
db = open_storage(sys.argv[1] or None, Path(sys.argv[2]))
print(db.migrate())
"""


def test_processes_starting_at_once_apply_each_migration_exactly_once(database_url: str | None,
                                                                      tmp_path: Path) -> None:
    children = [subprocess.Popen([sys.executable, "-c", MIGRATE_IN_CHILD, database_url or "",
                                  str(tmp_path / "shared.db")], stdout=subprocess.PIPE, text=True)
                for _ in range(6)]
    applied = [int(child.communicate(timeout=60)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert sum(applied) == len(MIGRATIONS)
    db = open_storage(database_url, tmp_path / "shared.db")
    assert db.schema_version() == MIGRATIONS[-1].version
    db.close()


def test_concurrent_claimers_each_get_a_task_once(storage: Storage, tmp_path: Path,
                                                  database_url: str | None) -> None:
    """Four threads with connections of their own drain 200 tasks: every task claimed exactly once."""
    clock = ManualClock()
    TaskQueue(storage, clock).publish([TaskSpec("system.sleep", {"seconds": 0}) for _ in range(200)])
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(n: int) -> None:
        queue = TaskQueue(open_storage(database_url, tmp_path / "heablcoin.db"), clock)
        while (task := queue.claim(f"w{n}")) is not None:
            assert queue.complete(task.id, f"w{n}", {})
            with lock:
                claimed.append(task.id)
        queue.db.close()

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(claimed) == 200 and len(set(claimed)) == 200
    counts = {r[0]: r[1] for r in storage.conn.execute("SELECT status, sum(n) FROM task_counts GROUP BY status")}
    assert counts["COMPLETED"] == 200 and counts.get("PENDING", 0) == 0


@pytest.mark.anyio
async def test_an_idle_worker_on_postgresql_is_woken_by_the_publish(engine_name: str, storage: Storage) -> None:
    """With a 30 s fallback poll, only the NOTIFY sent at commit can wake the listener this soon."""
    if engine_name == "sqlite":
        assert storage.listener("tasks") is None  # SQLite workers poll
        return
    listener = storage.listener("tasks")
    assert listener is not None
    assert await listener.wait(0.2) is False  # opens the LISTEN connection; nothing published yet
    TaskQueue(storage, ManualClock()).publish([TaskSpec("system.sleep", {"seconds": 0})])
    with anyio.fail_after(10):
        assert await listener.wait(30) is True
    await listener.aclose()


def test_sqlite_spellings_are_translated_and_literals_kept() -> None:
    assert translate("SELECT * FROM t INDEXED BY i WHERE a = ? AND b LIKE 'x%?' AND c % 2 = 0") == (
        "SELECT * FROM t  WHERE a = %s AND b LIKE 'x%%?' AND c %% 2 = 0")
    assert translate("EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value = ?)") == (
        "EXISTS (SELECT 1 FROM json_array_elements_text((tasks.tags)::json) AS json_each(value) WHERE value = %s)")


def test_a_schedule_publishes_once_per_period_however_many_workers_tick(storage: Storage, tmp_path: Path,
                                                                        database_url: str | None) -> None:
    """Six workers (connections of their own) tick at the same moments for 15 periods: one task per
    period, never two (each run completes before the next period, so none is skipped as busy)."""
    from heablcoin_mcp.core.tasks.scheduler import Scheduler

    clock = ManualClock()
    queue = TaskQueue(storage, clock)
    schedule_id, first = Scheduler(storage, queue, clock).add(TaskSpec("system.sleep", {"seconds": 0}), 60)
    workers = []
    for _ in range(6):
        db = open_storage(database_url, tmp_path / "heablcoin.db")
        own = TaskQueue(db, clock)
        workers.append((db, own, Scheduler(db, own, clock)))
    for _ in range(15):
        while (task := queue.claim("w")) is not None:  # the period's task ran
            queue.complete(task.id, "w", {})
        clock.advance(60)
        barrier = threading.Barrier(len(workers))

        def tick(scheduler: Scheduler, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            scheduler.tick()

        threads = [threading.Thread(target=tick, args=(scheduler,)) for _, _, scheduler in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    published = storage.conn.execute("SELECT count(*) FROM tasks WHERE schedule_id = ?", (schedule_id,)).fetchone()[0]
    assert first and published == 1 + 15
    for db, _, _ in workers:
        db.close()


def test_tasks_stored_before_seq_keyed_the_table_come_through_whole(database_url: str | None,
                                                                    tmp_path: Path) -> None:
    """Migration 9 on a queue written by the schema before it (explicit seq from a counter row that
    ran ahead of the stored rows): every row, number and edge kept; new tasks are numbered after
    them and claimed after them; deleting a parent still takes its edges; the counts still follow."""
    old = opened(database_url, tmp_path, tuple(MIGRATIONS[:8]) if not database_url else tuple(PG_MIGRATIONS[:8]))
    old.migrate()
    tasks = [("tsk_a", 1, 2, "COMPLETED", 0), ("tsk_b", 2, 2, "PENDING", 0), ("tsk_c", 3, 3, "PENDING", 1),
             ("tsk_d", 7, 2, "PENDING", 0)]
    with old.write() as conn:
        conn.executemany("INSERT INTO tasks (id, seq, name, payload, priority, status, created_at, updated_at, "
                         "pending_parents) VALUES (?, ?, 'system.sleep', '{}', ?, ?, 1.0, 1.0, ?)", tasks)
        conn.executemany("INSERT INTO task_edges (parent, child) VALUES (?, ?)",
                         [("tsk_a", "tsk_c"), ("tsk_b", "tsk_c")])
        conn.execute("INSERT INTO counters (name, value) VALUES ('task_seq', 9)")
        conn.execute("INSERT INTO task_counts (status, priority, n) SELECT status, priority, count(*) FROM tasks "
                     "GROUP BY status, priority")
    old.close()

    db = opened(database_url, tmp_path, tuple(PG_MIGRATIONS if database_url else MIGRATIONS))
    assert db.migrate() == len(MIGRATIONS) - 8  # 9 and what came after it
    kept = [tuple(r) for r in db.conn.execute(
        "SELECT id, seq, priority, status, pending_parents FROM tasks ORDER BY seq")]
    assert kept == tasks
    assert sorted(tuple(r) for r in db.conn.execute("SELECT parent, child FROM task_edges")) == [
        ("tsk_a", "tsk_c"), ("tsk_b", "tsk_c")]
    assert db.conn.execute("SELECT count(*) FROM counters WHERE name = 'task_seq'").fetchone()[0] == 0

    queue = TaskQueue(db, ManualClock())
    new = queue.publish([TaskSpec("system.sleep", {"seconds": 0}, priority=2) for _ in range(2)])
    seqs = [db.conn.execute("SELECT seq FROM tasks WHERE id = ?", (i,)).fetchone()[0] for i in new]
    assert seqs[0] > 7 and seqs[1] == seqs[0] + 1
    claimed = [queue.claim("w").id for _ in range(3)]  # type: ignore[union-attr]
    assert claimed == ["tsk_b", "tsk_d", new[0]]  # priority 3 (tsk_c) waits for tsk_b; then FIFO by seq
    with db.write() as conn:
        conn.execute("DELETE FROM tasks WHERE id = 'tsk_a'")
    assert [tuple(r) for r in db.conn.execute("SELECT parent, child FROM task_edges")] == [("tsk_b", "tsk_c")]
    counts = {(r[0], r[1]): r[2] for r in db.conn.execute("SELECT status, priority, n FROM task_counts WHERE n != 0")}
    assert counts == {("PENDING", 3): 1, ("RUNNING", 2): 3, ("PENDING", 2): 1}
    db.close()


def test_a_write_waiting_past_the_lock_timeout_is_busy_and_the_next_one_works(database_url: str | None,
                                                                             tmp_path: Path) -> None:
    """Another process holds the write lock: the write is a retryable Busy with nothing written, and the
    same connection writes normally once the lock is free."""
    from heablcoin_mcp.core.storage import Database
    from heablcoin_mcp.errors import Busy

    db: Storage = (PostgresDatabase(database_url, lock_timeout_ms=200) if database_url
                   else Database(tmp_path / "x.db", busy_timeout_ms=200))
    db.migrate()
    if database_url:
        import psycopg

        from heablcoin_mcp.core.storage.postgres import WRITE_LOCK
        other = psycopg.connect(database_url, autocommit=True)
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    else:
        import sqlite3

        other = sqlite3.connect(tmp_path / "x.db", isolation_level=None)  # type: ignore[assignment]
        other.execute("BEGIN IMMEDIATE")
    with pytest.raises(Busy), db.write() as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('held', 'x', 1)")
    other.rollback()
    other.close()
    with db.write() as conn:
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES ('free', 'y', 2)")
    assert [r[0] for r in db.conn.execute("SELECT key FROM kv ORDER BY key")] == ["free"]
    db.close()
