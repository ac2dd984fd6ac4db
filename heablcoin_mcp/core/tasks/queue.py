"""A persistent priority task queue in SQLite: dependencies, leases, timeouts, expiry and retries.

State machine::

    publish ──► PENDING ──claim──► RUNNING ──ok──► COMPLETED ──► children whose parents are all
       │           ▲   │              │                          complete become runnable
       │           │   │              ├─error, attempts left──► PENDING (backoff)
       │           │   │              ├─error, none left──────► FAILED ─┐
       │           │   │              ├─timeout, attempts left─► TIMED_OUT (claimable after backoff)
       │           │   │              ├─timeout, none left─────► FAILED ─┤
       │           │   │              └─lease lapsed (worker died): as an error
       │           │   ├─expires_at passed──────────────────────► EXPIRED ┤ dependents (and theirs)
       │           │   └─cancel─────────────────────────────────► CANCELLED ┘ are CANCELLED with the reason
       │           └─retry_task (FAILED / TIMED_OUT / CANCELLED / EXPIRED; attempts reset to 0)
       └─ a parent already FAILED / CANCELLED / EXPIRED: refused

- Order: effective priority first — priority + 1 level per ``aging_seconds`` waited (capped at
  URGENT), so a LOW task is not starved forever — then FIFO by a monotonic sequence.
- Claim: one short BEGIN IMMEDIATE transaction sets RUNNING, the worker, a lease and attempts + 1.
  Workers renew the lease while the handler runs; a lapsed lease means the worker died.
- Delivery is at-least-once: a worker killed after finishing a handler but before recording it
  will see the task run again. Handlers must be idempotent.
- max_retries counts retries after the first run: a task runs at most 1 + max_retries times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Connection, Row, Storage
from heablcoin_mcp.core.tasks.specs import TaskSpec, check_acyclic, new_task_ids
from heablcoin_mcp.core.tasks.stats import PRIORITY_NAMES, task_stats
from heablcoin_mcp.errors import InvalidInput, NotFound

Status = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT"]
# The head of one priority's line, through the claim index (tasks_claimable).
HEAD_OF_LINE = ("SELECT * FROM (SELECT id, seq, priority, created_at FROM tasks WHERE status IN ('PENDING', "
                "'TIMED_OUT') AND pending_parents = 0 AND priority = ? AND run_after <= ? AND (expires_at IS NULL "
                "OR expires_at > ?) ORDER BY seq LIMIT 1) AS head")
FINISHED = "RETURNING id, name, status, attempts, error, completed_at, result, callback_url"  # for its webhook
WAITING = ("PENDING", "TIMED_OUT")
DEAD = ("FAILED", "CANCELLED", "EXPIRED")
FINAL = ("COMPLETED", *DEAD)
# FINAL as the conditions of the partial indexes that hold those tasks (tasks_completed, tasks_dead)
FINISHED_BY_INDEX = ("status = 'COMPLETED'", f"status IN {DEAD}")
MAX_RESULT_CHARS = 200_000
CHANNEL = "tasks"  # notified when a task becomes runnable (PostgreSQL wakes idle workers with it)


@dataclass(frozen=True)
class QueuePolicy:
    lease_seconds: float = 30.0
    aging_seconds: float = 300.0
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    retention_seconds: float = 7 * 86400.0


class TaskView(BaseModel):
    id: str
    name: str
    payload: dict[str, Any]
    priority: str
    tags: list[str]
    status: Status
    created_at: float
    updated_at: float
    started_at: float | None
    completed_at: float | None
    attempts: int
    max_retries: int
    timeout: float | None
    expires_at: float | None
    run_after: float
    depends_on: list[str]
    waiting_on: int = Field(description="parents not yet completed")
    result: Any = None
    error: str | None
    schedule_id: str | None
    callback_url: str | None
    worker_id: str | None


class TaskQueue:
    def __init__(self, db: Storage, clock: Clock, policy: QueuePolicy | None = None,
                 rng: random.Random | None = None) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy or QueuePolicy()
        self.rng = rng or random.Random()
        self._watchers: set[Callable[[], None]] = set()
        self._runnable_watchers: set[Callable[[], None]] = set()
        self._made_runnable = threading.local()  # per transaction: did it make a task runnable?

    def watch(self, watcher: Callable[[], None], *, runnable_only: bool = False) -> Callable[[], None]:
        """Run ``watcher`` on the calling event loop after each write this queue commits in this
        process, whichever thread wrote (a sync tool writes from a thread): a waiter wakes on it instead
        of polling. With ``runnable_only``, only after a write that made a task runnable (an idle worker
        wakes on it). Returns the function that stops it."""
        loop = asyncio.get_running_loop()

        def on_loop() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(watcher)

        watchers = self._runnable_watchers if runnable_only else self._watchers
        watchers.add(on_loop)
        return lambda: watchers.discard(on_loop)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        self._made_runnable.now = False
        with self.db.write() as conn:
            yield conn
        for watcher in [*self._watchers, *(self._runnable_watchers if self._made_runnable.now else ())]:
            watcher()

    def _runnable(self, conn: Connection) -> None:
        """This transaction makes a task runnable: wake idle workers here and, on PostgreSQL, elsewhere."""
        self.db.notify(conn, CHANNEL)
        self._made_runnable.now = True

    # --- publish -------------------------------------------------------------------------------

    def publish(self, specs: list[TaskSpec]) -> list[str]:
        """Publish tasks in one transaction; ``depends_on`` names task ids or keys of this batch.

        Raises:
            InvalidInput: a cycle, a self-dependency, a duplicate key, or a parent already dead.
            NotFound: a dependency that names no task.
        """
        keys = [spec.key for spec in specs if spec.key]
        if len(set(keys)) != len(keys):
            raise InvalidInput("two tasks of the batch share a key")
        own = new_task_ids(len(specs), self.clock.now())
        ids = {spec.key: task_id for spec, task_id in zip(specs, own, strict=True) if spec.key}
        for spec in specs:
            if spec.key and spec.key in spec.depends_on:
                raise InvalidInput(f"task {spec.key} depends on itself")
        check_acyclic(specs, ids)
        with self._write() as conn:
            now = self.clock.now()
            rows, edges, batch = [], [], set(own)  # a parent from this batch is new: waited for
            for spec, task_id in zip(specs, own, strict=True):
                parents = list(dict.fromkeys(ids.get(d, d) for d in spec.depends_on))
                waiting = sum(parent in batch or self._parent_waits(conn, parent) for parent in parents)
                rows.append((task_id, spec.name, json.dumps(spec.payload), spec.priority,
                             json.dumps(list(spec.tags)) if spec.tags else "[]", now, now, spec.max_retries,
                             spec.timeout, spec.expires_at, waiting, spec.callback_url, spec.schedule_id))
                edges += [(parent, task_id) for parent in parents]
            conn.executemany(  # seq: the table numbers the rows in this order (FIFO within a priority)
                "INSERT INTO tasks (id, name, payload, priority, tags, status, created_at, updated_at, "
                "max_retries, timeout, expires_at, pending_parents, callback_url, schedule_id) "
                "VALUES (?, ?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if edges:
                conn.executemany("INSERT INTO task_edges (parent, child) VALUES (?, ?)", edges)
            conn.executemany("INSERT INTO task_counts (status, priority, n) VALUES ('PENDING', ?, ?) ON CONFLICT "
                             "(status, priority) DO UPDATE SET n = task_counts.n + excluded.n",
                             list(Counter(spec.priority for spec in specs).items()))
            self._runnable(conn)
        return own

    @staticmethod
    def _parent_waits(conn: Connection, parent: str) -> bool:
        """Whether a new task must wait for this parent. Raises NotFound / InvalidInput for a parent
        that is no task, or one that can never complete."""
        row = conn.execute("SELECT status FROM tasks WHERE id = ?", (parent,)).fetchone()
        if row is None:
            raise NotFound(f"dependency {parent!r} is not a task",
                           hint="depends_on takes task ids (or keys of tasks in the same batch).")
        if row["status"] in DEAD:
            raise InvalidInput(f"dependency {parent} is {row['status']}; this task could never run",
                               hint="Retry the parent first (retry_enhanced_task).")
        return bool(row["status"] != "COMPLETED")

    # --- claim and outcomes --------------------------------------------------------------------

    def claim(self, worker_id: str) -> TaskView | None:
        """The best runnable task, now RUNNING under this worker's lease; None when there is none."""
        with self._write() as conn:
            now = self.clock.now()  # under the write lock, as everywhere here: stamps follow the commit order
            best = self._best_runnable(conn, now)
            if best is None:
                return None
            row = conn.execute("UPDATE tasks SET status = 'RUNNING', worker_id = ?, lease_until = ?, "
                               "attempts = attempts + 1, started_at = ?, updated_at = ? WHERE id = ? RETURNING *",
                               (worker_id, now + self.policy.lease_seconds, now, now, best["id"])).fetchone()
            parents = [r[0] for r in conn.execute("SELECT parent FROM task_edges WHERE child = ?", (row["id"],))]
        return _view(row, parents)

    def _best_runnable(self, conn: Connection, now: float) -> Row | None:
        """Within one priority the oldest task has aged the most, so only the head of each of the four
        FIFO lines can be the best: four indexed look-ups in one statement, not a ranking of all."""
        heads = conn.execute(" UNION ALL ".join([HEAD_OF_LINE] * 4),
                             [v for priority in (4, 3, 2, 1) for v in (priority, now, now)]).fetchall()
        if not heads:
            return None
        return max(heads, key=lambda h: (self.effective_priority(h["priority"], h["created_at"], now), -h["seq"]))

    def effective_priority(self, priority: int, created_at: float, now: float) -> int:
        """One level more per ``aging_seconds`` waited, at most URGENT."""
        return min(4, priority + int((now - created_at) // self.policy.aging_seconds))

    def renew(self, task_id: str, worker_id: str) -> bool:
        """Extend the lease; False if the task is no longer ours (reaped or cancelled)."""
        with self._write() as conn:
            now = self.clock.now()
            changed = conn.execute("UPDATE tasks SET lease_until = ? WHERE id = ? AND status = 'RUNNING' AND "
                                   "worker_id = ?", (now + self.policy.lease_seconds, task_id, worker_id)).rowcount
        return changed == 1

    def complete(self, task_id: str, worker_id: str, result: Any) -> bool:
        """Record success and release the children, in one transaction. False if no longer ours."""
        text = json.dumps(result, default=str)
        if len(text) > MAX_RESULT_CHARS:
            text = json.dumps({"truncated": True, "preview": text[:2000]})
        with self._write() as conn:
            now = self.clock.now()
            done = conn.execute("UPDATE tasks SET status = 'COMPLETED', result = ?, error = NULL, completed_at = ?,"
                                " updated_at = ?, lease_until = NULL WHERE id = ? AND status = 'RUNNING' AND "
                                f"worker_id = ? {FINISHED}", (text, now, now, task_id, worker_id)).fetchone()
            if done is not None:
                released = conn.execute("UPDATE tasks SET pending_parents = pending_parents - 1, updated_at = ? "
                                        "WHERE id IN (SELECT child FROM task_edges WHERE parent = ?)",
                                        (now, task_id)).rowcount
                if released:
                    self._runnable(conn)
                _queue_callback(conn, done, now)
        return done is not None

    def fail(self, task_id: str, worker_id: str | None, error: str, *, timed_out: bool = False) -> Status | None:
        """A run failed (or timed out, or its worker died): retry with backoff while attempts remain."""
        with self._write() as conn:
            now = self.clock.now()
            row = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None or row["status"] != "RUNNING" or (worker_id and row["worker_id"] != worker_id):
                return None
            return self._fail_row(conn, row, error, timed_out, now)

    def _fail_row(self, conn: Connection, row: Row, error: str, timed_out: bool,
                  now: float) -> Status:
        if row["attempts"] <= row["max_retries"]:
            status: Status = "TIMED_OUT" if timed_out else "PENDING"
            conn.execute("UPDATE tasks SET status = ?, error = ?, run_after = ?, lease_until = NULL, updated_at = ? "
                         "WHERE id = ?", (status, error, now + self.backoff(row["attempts"]), now, row["id"]))
            return status
        failed = conn.execute("UPDATE tasks SET status = 'FAILED', error = ?, completed_at = ?, lease_until = NULL, "
                              f"updated_at = ? WHERE id = ? {FINISHED}", (error, now, now, row["id"])).fetchone()
        self._cascade(conn, row["id"], f"cancelled: dependency {row['id']} failed", now)
        _queue_callback(conn, failed, now)
        return "FAILED"

    def reschedule(self, task_id: str, worker_id: str, after: float, note: str) -> bool:
        """Run again later without counting an attempt (a price alert that has not fired yet)."""
        with self._write() as conn:
            now = self.clock.now()
            changed = conn.execute(
                "UPDATE tasks SET status = 'PENDING', attempts = attempts - 1, run_after = ?, result = ?, "
                "lease_until = NULL, updated_at = ? WHERE id = ? AND status = 'RUNNING' AND worker_id = ?",
                (now + after, json.dumps({"waiting": note}), now, task_id, worker_id)).rowcount
        return changed == 1

    def wake(self, task_id: str, reason: dict[str, Any]) -> bool:
        """Run a waiting task now, keeping ``reason`` as its result for the handler to read (a price
        alert whose level a streamed trade crossed). False when it is not waiting any more."""
        with self._write() as conn:
            now = self.clock.now()
            changed = conn.execute("UPDATE tasks SET run_after = ?, result = ?, updated_at = ? WHERE id = ? AND "
                                   "status = 'PENDING' AND run_after > ?",
                                   (now, json.dumps(reason), now, task_id, now)).rowcount
            if changed:
                self._runnable(conn)
        return changed == 1

    def backoff(self, attempts: int) -> float:
        """Exponential with full jitter: a random wait up to base × 2^(attempts−1), capped."""
        return self.rng.uniform(0.5, 1.0) * min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** (attempts - 1))

    def _cascade(self, conn: Connection, task_id: str, reason: str, now: float) -> int:
        """Cancel every waiting descendant of a dead task: none waits forever on it."""
        # The WITH sits inside the subquery: SQLite reports no rowcount for a statement that starts with one.
        return int(conn.execute(
            "UPDATE tasks SET status = 'CANCELLED', error = ?, completed_at = ?, updated_at = ? WHERE id IN "
            "(WITH RECURSIVE below(id) AS (SELECT child FROM task_edges WHERE parent = ? UNION "
            "SELECT e.child FROM task_edges e JOIN below b ON e.parent = b.id) SELECT id FROM below) "
            "AND status IN ('PENDING', 'TIMED_OUT', 'RUNNING')",
            (reason, now, now, task_id)).rowcount)

    # --- maintenance ---------------------------------------------------------------------------

    def reap(self) -> int:
        """Tasks whose worker stopped renewing its lease (it died) go back to PENDING or FAIL."""
        with self._write() as conn:
            now = self.clock.now()
            rows = conn.execute("SELECT * FROM tasks WHERE status = 'RUNNING' AND lease_until < ?", (now,)).fetchall()
            for row in rows:
                self._fail_row(conn, row, f"lease lapsed: worker {row['worker_id']} stopped", False, now)
        return len(rows)

    def expire(self) -> int:
        """Waiting tasks past their expiry become EXPIRED (cascading to their dependents)."""
        with self._write() as conn:
            now = self.clock.now()
            rows = conn.execute("SELECT id FROM tasks WHERE status IN ('PENDING', 'TIMED_OUT') AND expires_at IS NOT "
                                "NULL AND expires_at <= ?", (now,)).fetchall()
            for row in rows:
                conn.execute("UPDATE tasks SET status = 'EXPIRED', error = 'expired before it could run', "
                             "completed_at = ?, updated_at = ? WHERE id = ?", (now, now, row["id"]))
                self._cascade(conn, row["id"], f"cancelled: dependency {row['id']} expired", now)
        return len(rows)

    def cleanup(self) -> tuple[int, int]:
        """Expire what is due, then delete finished tasks older than the retention window."""
        expired = self.expire()
        cutoff = self.clock.now() - self.policy.retention_seconds
        with self._write() as conn:
            deleted = sum(conn.execute(f"DELETE FROM tasks WHERE {finished} AND completed_at < ?", (cutoff,)).rowcount
                          for finished in FINISHED_BY_INDEX)
        return expired, deleted

    # --- user actions --------------------------------------------------------------------------

    def cancel(self, task_id: str, *, cascade: bool = True) -> tuple[TaskView, int]:
        """Cancel a waiting or running task. With cascade its dependents are cancelled too; without,
        they are released to run without it. Raises NotFound / InvalidInput (already finished)."""
        with self._write() as conn:
            now = self.clock.now()
            row = self._row(conn, task_id)
            if row["status"] in FINAL:
                raise InvalidInput(f"task {task_id} is already {row['status']}")
            conn.execute("UPDATE tasks SET status = 'CANCELLED', error = 'cancelled on request', completed_at = ?, "
                         "updated_at = ?, lease_until = NULL WHERE id = ?", (now, now, task_id))
            if cascade:
                affected = self._cascade(conn, task_id, f"cancelled: dependency {task_id} was cancelled", now)
            else:
                affected = conn.execute("UPDATE tasks SET pending_parents = pending_parents - 1 WHERE id IN "
                                        "(SELECT child FROM task_edges WHERE parent = ?)", (task_id,)).rowcount
        return self.get(task_id), affected

    def retry(self, task_id: str) -> TaskView:
        """Re-queue a FAILED / TIMED_OUT / CANCELLED / EXPIRED task with attempts reset to 0.

        Raises InvalidInput when it is not in one of those states or one of its parents is dead."""
        with self._write() as conn:
            now = self.clock.now()
            row = self._row(conn, task_id)
            if row["status"] not in ("FAILED", "TIMED_OUT", "CANCELLED", "EXPIRED"):
                raise InvalidInput(f"only failed, timed-out, cancelled or expired tasks can be retried; {task_id} is "
                                   f"{row['status']}")
            parents = conn.execute("SELECT t.id, t.status FROM task_edges e JOIN tasks t ON t.id = e.parent "
                                   "WHERE e.child = ?", (task_id,)).fetchall()
            dead = [p["id"] for p in parents if p["status"] in DEAD]
            if dead:
                raise InvalidInput(f"dependencies {', '.join(dead)} are dead", hint="Retry them first.")
            waiting = sum(p["status"] != "COMPLETED" for p in parents)
            expires = row["expires_at"] if row["expires_at"] is None or row["expires_at"] > now else None
            conn.execute("UPDATE tasks SET status = 'PENDING', attempts = 0, error = NULL, result = NULL, "
                         "run_after = 0, pending_parents = ?, completed_at = NULL, expires_at = ?, updated_at = ? "
                         "WHERE id = ?",
                         (waiting, expires, now, task_id))
            self._runnable(conn)
        return self.get(task_id)

    # --- reading -------------------------------------------------------------------------------

    def _row(self, conn: Connection, task_id: str) -> Row:
        row = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown task {task_id!r}", hint="list_enhanced_tasks shows task ids.")
        return row

    def get(self, task_id: str) -> TaskView:
        conn = self.db.conn
        row = self._row(conn, task_id)
        parents = [r[0] for r in conn.execute("SELECT parent FROM task_edges WHERE child = ?", (task_id,))]
        return _view(row, parents)

    def parent_results(self, task_id: str) -> dict[str, Any]:
        rows = self.db.conn.execute("SELECT t.id, t.name, t.result FROM task_edges e JOIN tasks t ON t.id = e.parent "
                                    "WHERE e.child = ? AND t.status = 'COMPLETED'", (task_id,)).fetchall()
        return {r["id"]: {"name": r["name"], "result": json.loads(r["result"]) if r["result"] else None}
                for r in rows}

    def list(self, *, status: str | None = None, priority_min: int | None = None, tags: Iterable[str] = (),
             name: str | None = None, limit: int = 50) -> list[TaskView]:
        sql, params = "SELECT * FROM tasks WHERE 1 = 1", []
        if status:
            sql, params = sql + " AND status = ?", [*params, status]
        if priority_min:
            sql, params = sql + " AND priority >= ?", [*params, priority_min]
        if name:
            sql, params = sql + " AND name = ?", [*params, name]
        for tag in tags:
            sql, params = sql + " AND EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value = ?)", [*params, tag]
        rows = self.db.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
        if not rows:
            return []
        parents: dict[str, list[str]] = {r["id"]: [] for r in rows}
        marks = ",".join("?" * len(parents))
        for edge in self.db.conn.execute(f"SELECT parent, child FROM task_edges WHERE child IN ({marks})",
                                         list(parents)):
            parents[edge["child"]].append(edge["parent"])
        return [_view(r, parents[r["id"]]) for r in rows]

    def stats(self) -> dict[str, Any]:
        return task_stats(self.db, self.clock.now())


def _queue_callback(conn: Connection, row: Row, now: float) -> None:
    """A task with a callback_url that just finished gets a webhook delivery, in the same transaction
    (``row``: what the finishing statement returned, see FINISHED)."""
    if not row["callback_url"]:
        return
    summary = {"id": row["id"], "name": row["name"], "status": row["status"], "attempts": row["attempts"],
               "error": row["error"], "completed_at": row["completed_at"],
               "result": json.loads(row["result"]) if row["result"] else None}
    conn.execute("INSERT INTO webhook_deliveries (task_id, url, body, status, next_attempt, created_at) "
                 "VALUES (?, ?, ?, 'pending', ?, ?)", (row["id"], row["callback_url"], json.dumps(summary, default=str),
                                                      now, now))


def _view(row: Row, parents: list[str]) -> TaskView:
    return TaskView(
        id=row["id"], name=row["name"], payload=json.loads(row["payload"]),
        priority=PRIORITY_NAMES[row["priority"]], tags=json.loads(row["tags"]), status=row["status"],
        created_at=row["created_at"], updated_at=row["updated_at"], started_at=row["started_at"],
        completed_at=row["completed_at"], attempts=row["attempts"], max_retries=row["max_retries"],
        timeout=row["timeout"], expires_at=row["expires_at"], run_after=row["run_after"], depends_on=parents,
        waiting_on=row["pending_parents"], result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"], schedule_id=row["schedule_id"], callback_url=row["callback_url"],
        worker_id=row["worker_id"])
