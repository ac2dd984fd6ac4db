"""Task queue benchmarks (ratios against references measured in the same run).

- publish one task per transaction, and a batch in one transaction, vs raw SQLite inserts with the
  same pragmas, and vs Huey's SqliteStorage.enqueue;
- claim + complete throughput vs a raw SQLite claim/complete pair of statements per task, and vs
  Huey's SqliteStorage.dequeue;
- releasing a 10,000-task DAG (every task but the root waits on a parent) vs running 10,000
  independent tasks: the cost of dependencies;
- claim + complete of 1,000 tasks from a queue of 100,000 vs from a queue of 1,000: flat in the queue;
- get_enhanced_task_stats with 100,000 tasks stored vs with 10,000: flat means O(1) in what is stored;
- WAL pages written per publish and per claim + complete vs the raw statements (pages, not time);
- durability: with synchronous=FULL, the time per task of a batched publish vs one fsync of the
  same disk (a ratio of 0.1 means ten tasks made durable per fsync the disk can do).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.storage import Database, transaction
from heablcoin_mcp.core.tasks.queue import TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec

PAYLOAD = {"seconds": 0}
RAW_INSERT = "INSERT INTO jobs (payload, priority, status) VALUES (?, 2, 'PENDING')"


def _queue(path: Path) -> TaskQueue:
    db = Database(path)
    db.migrate()
    return TaskQueue(db, SystemClock())


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _raw(path: Path) -> sqlite3.Connection:
    """The reference: a jobs table on a connection with the product's pragmas."""
    conn = Database(path, migrations=()).connect()
    conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT, priority INT, status TEXT, worker TEXT)")
    # the index a careful user would write for the claim; without it the reference scans the table
    conn.execute("CREATE INDEX jobs_claim ON jobs(status, priority DESC, id)")
    return conn


def _raw_insert(conn: sqlite3.Connection) -> None:
    """One job, one transaction."""
    with transaction(conn):
        conn.execute(RAW_INSERT, (json.dumps(PAYLOAD),))


def _raw_batch(conn: sqlite3.Connection, count: int) -> None:
    """``count`` jobs in one transaction."""
    with transaction(conn):
        conn.executemany(RAW_INSERT, [(json.dumps(PAYLOAD),)] * count)


def _raw_claim_complete(conn: sqlite3.Connection) -> bool:
    """The bare pair of transactions: claim the best pending job, then complete it; False when none."""
    with transaction(conn):
        row = conn.execute("SELECT id FROM jobs WHERE status = 'PENDING' ORDER BY priority DESC, id LIMIT 1").fetchone()
        if row is None:
            return False
        conn.execute("UPDATE jobs SET status = 'RUNNING', worker = 'bench' WHERE id = ?", (row[0],))
    with transaction(conn):
        conn.execute("UPDATE jobs SET status = 'COMPLETED' WHERE id = ?", (row[0],))
    return True


def _claim_complete(queue: TaskQueue) -> bool:
    """Ours: the same pair through the queue; False when nothing is runnable."""
    task = queue.claim("bench")
    if task is None:
        return False
    queue.complete(task.id, "bench", {})
    return True


def _drain(queue: TaskQueue) -> None:
    while _claim_complete(queue):
        pass


def rows(count: int = 2000) -> list[tuple[str, float, str, float] | tuple[str, float, str, float, str]]:
    import huey.storage

    results: list[tuple[str, float, str, float] | tuple[str, float, str, float, str]] = []
    with tempfile.TemporaryDirectory() as home:
        base = Path(home)
        queue = _queue(base / "q1.db")
        ours = _timed(lambda: [queue.publish([TaskSpec("system.sleep", PAYLOAD)]) for _ in range(count)])
        raw_conn = _raw(base / "raw1.db")
        raw = _timed(lambda: [_raw_insert(raw_conn) for _ in range(count)])
        storage = huey.storage.SqliteStorage(name="bench", filename=str(base / "huey.db"))
        huey_time = _timed(lambda: [storage.enqueue(b"x" * 64, priority=2) for _ in range(count)])
        results += [(f"publish {count}, one per transaction", ours, "raw SQLite insert per txn", raw),
                    (f"publish {count}, one per transaction", ours, "Huey SqliteStorage.enqueue", huey_time)]

        batch_queue = _queue(base / "q2.db")
        batch = _timed(lambda: batch_queue.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(count)]))
        raw_batch_conn = _raw(base / "raw2.db")
        raw_batch = _timed(lambda: _raw_batch(raw_batch_conn, count))
        results.append((f"publish {count} in one batch", batch, "raw executemany, one txn", raw_batch))

        claim = _timed(lambda: _drain(queue))

        def raw_drain() -> None:
            while _raw_claim_complete(raw_conn):
                pass

        raw_claim = _timed(raw_drain)
        huey_dequeue = _timed(lambda: [storage.dequeue() for _ in range(count)])
        results += [(f"claim + complete {count}", claim, "raw SQLite claim + complete", raw_claim),
                    (f"claim + complete {count}", claim, "Huey SqliteStorage.dequeue", huey_dequeue)]

        dag_size = 10_000
        dag = _queue(base / "dag.db")
        keys = [f"t{i}" for i in range(dag_size)]
        dag.publish([TaskSpec("system.sleep", PAYLOAD, key=keys[i], depends_on=(keys[(i - 1) // 2],) if i else ())
                     for i in range(dag_size)])
        flat = _queue(base / "flat.db")
        flat.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(dag_size)])

        results.append((f"run a {dag_size:,}-task DAG (binary tree)", _timed(lambda: _drain(dag)),
                        f"{dag_size:,} independent tasks", _timed(lambda: _drain(flat))))

        drained = {}
        for queued in (1_000, 100_000):  # the same 1,000 claims and completions from a short and a long queue
            q = _queue(base / f"queued-{queued}.db")
            q.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(queued)])
            drained[queued] = _timed(lambda q=q: [_claim_complete(q) for _ in range(1_000)])
        results.append(("claim + complete 1,000 of 100,000 queued", drained[100_000],
                        "of 1,000 queued", drained[1_000]))

        stats = {}
        for stored in (10_000, 100_000):  # run times read the last 1,000 completions: below ~2,000 stored, fewer
            q = _queue(base / f"stats-{stored}.db")
            q.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(stored)])
            with q.db.write() as conn:  # half of them done over the past days, as in a queue that has run a while
                conn.execute("UPDATE tasks SET status = 'COMPLETED', started_at = created_at - seq * 10, "
                             "completed_at = created_at - seq * 10 + 1 WHERE seq % 2 = 0")
            stats[stored] = sorted(_timed(q.stats) for _ in range(21))[10]
        results.append(("task stats, 100,000 tasks stored", stats[100_000], "task stats, 10,000 stored", stats[10_000]))
        results += _pages_written(base)
        results.append(_durable_batch(base))
    return results


def _pages_written(base: Path, count: int = 500) -> list[tuple[str, float, str, float, str]]:
    """Pages each transaction writes to the WAL (its growth with checkpoints off), ours vs the raw pair:
    with synchronous=NORMAL a commit's cost is mostly its pages."""
    import os

    def pages(path: Path, fn: Callable[[], object]) -> float:
        before = os.path.getsize(f"{path}-wal")
        for _ in range(count):
            fn()
        return (os.path.getsize(f"{path}-wal") - before) / (4096 + 24) / count  # a WAL frame: header + page

    queue = _queue(base / "pages.db")
    raw = _raw(base / "pages-raw.db")
    for conn in (queue.db.conn, raw):
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    for _ in range(2):  # warm: both tables past their first pages
        queue.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(count)])
        _raw_batch(raw, count)
    raw_path = base / "pages-raw.db"
    published = pages(queue.db.path, lambda: queue.publish([TaskSpec("system.sleep", PAYLOAD)]))
    return [("WAL pages per publish", published, "per raw insert", pages(raw_path, lambda: _raw_insert(raw)), "pages"),
            ("WAL pages per claim + complete", pages(queue.db.path, lambda: _claim_complete(queue)),
             "per raw claim + complete", pages(raw_path, lambda: _raw_claim_complete(raw)), "pages")]


def _durable_batch(base: Path, batch: int = 500, batches: int = 20) -> tuple[str, float, str, float]:
    """Tasks made durable (synchronous=FULL, WAL) per fsync the disk manages, in the same directory."""
    import os

    db = Database(base / "durable.db", synchronous="FULL")
    db.migrate()
    queue = TaskQueue(db, SystemClock())
    per_task = _timed(lambda: [queue.publish([TaskSpec("system.sleep", PAYLOAD) for _ in range(batch)])
                               for _ in range(batches)]) / (batch * batches)
    probe = base / "fsync.probe"
    with probe.open("wb") as handle:
        def fsyncs() -> None:
            for _ in range(200):
                handle.write(b"x" * 4096)
                handle.flush()
                os.fsync(handle.fileno())
        per_fsync = _timed(fsyncs) / 200
    return (f"durable publish, per task in batches of {batch}", per_task, "one fsync of the same disk", per_fsync)
