"""Recurring tasks: every N seconds or a cron expression (5 fields, UTC).

Each due schedule publishes ONE fresh task and moves to its next time after now, however many
periods were missed while the server was down — and publishes nothing while the previous task
of the schedule is still waiting or running. Schedules live in SQLite and survive restarts.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.tasks.queue import TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec
from heablcoin_mcp.errors import InvalidInput

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))
MIN_EVERY = 10.0
MAX_EVERY = 366 * 86400.0


def parse_cron(expr: str) -> list[set[int]]:
    """Five fields: minute hour day-of-month month day-of-week (0 = Sunday); *, lists, ranges, /steps.

    Raises InvalidInput."""
    parts = expr.split()
    if len(parts) != 5:
        raise InvalidInput(f"cron {expr!r} needs 5 fields: minute hour day month weekday")
    sets = []
    for part, (name, low, high) in zip(parts, FIELDS, strict=True):
        values: set[int] = set()
        for item in part.split(","):
            body, _, step_text = item.partition("/")
            try:
                step = int(step_text) if step_text else 1
                start, end = (low, high) if body == "*" else (
                    (int(body.split("-")[0]), int(body.split("-")[1])) if "-" in body else (int(body), int(body)))
            except ValueError:
                raise InvalidInput(f"cron field {name} {item!r} is not a number, range or */step") from None
            if step < 1 or not low <= start <= end <= high:
                raise InvalidInput(f"cron field {name} {item!r} is outside {low}-{high}")
            values.update(range(start, end + 1, step))
        sets.append(values)
    return sets


def next_cron(fields: list[set[int]], after: float) -> float:
    minute, hour, day, month, weekday = fields
    t = datetime.fromtimestamp(after, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = t + timedelta(days=366 * 5)
    while t < limit:
        if t.month not in month:
            t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            continue
        if t.day not in day or (t.isoweekday() % 7) not in weekday:
            t = t.replace(hour=0, minute=0) + timedelta(days=1)
            continue
        if t.hour not in hour:
            t = t.replace(minute=0) + timedelta(hours=1)
            continue
        if t.minute not in minute:
            t += timedelta(minutes=1)
            continue
        return t.timestamp()
    raise InvalidInput("this cron expression never matches")


def parse_schedule(value: object) -> tuple[float | None, str | None]:
    """A number of seconds ("3600", 3600) or a cron expression ("*/15 * * * *")."""
    text = str(value).strip()
    try:
        every = float(text)
    except ValueError:
        parse_cron(text)
        return None, text
    if not math.isfinite(every) or not MIN_EVERY <= every <= MAX_EVERY:
        raise InvalidInput(f"a schedule must repeat every {MIN_EVERY:g} to {MAX_EVERY:g} seconds, got {text[:20]}")
    return every, None


class Scheduler:
    def __init__(self, db: Storage, queue: TaskQueue, clock: Clock) -> None:
        self.db, self.queue, self.clock = db, queue, clock

    def add(self, spec: TaskSpec, schedule: object) -> tuple[str, str]:
        """Create a schedule and publish its first task now. Returns (schedule id, task id)."""
        every, cron = parse_schedule(schedule)
        schedule_id = f"sch_{secrets.token_urlsafe(9)}"
        now = self.clock.now()
        stored = {"name": spec.name, "payload": spec.payload, "priority": spec.priority, "tags": list(spec.tags),
                  "max_retries": spec.max_retries, "timeout": spec.timeout, "callback_url": spec.callback_url}
        with self.db.write() as conn:
            conn.execute("INSERT INTO task_schedules (id, spec, every_seconds, cron, next_run, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (schedule_id, json.dumps(stored), every, cron,
                                                       self._next(every, cron, now), now))
        task_id = self._publish(schedule_id, stored)
        return schedule_id, task_id

    def _next(self, every: float | None, cron: str | None, now: float) -> float:
        return now + every if every is not None else next_cron(parse_cron(cron or ""), now)

    def _publish(self, schedule_id: str, stored: dict[str, Any]) -> str:
        spec = TaskSpec(name=stored["name"], payload=stored["payload"], priority=stored["priority"],
                        tags=tuple(stored["tags"]), max_retries=stored["max_retries"], timeout=stored["timeout"],
                        callback_url=stored["callback_url"], schedule_id=schedule_id)
        (task_id,) = self.queue.publish([spec])
        with self.db.write() as conn:
            conn.execute("UPDATE task_schedules SET last_task = ? WHERE id = ?", (task_id, schedule_id))
        return task_id

    def tick(self) -> int:
        """Publish one task per due schedule (none if its last task is still pending); returns how many.
        However many workers tick at once, each period is taken by one of them (compare-and-set on
        ``next_run``); a worker that dies between taking it and publishing skips that one period."""
        now = self.clock.now()
        published = 0
        due = self.db.conn.execute("SELECT * FROM task_schedules WHERE enabled = 1 AND next_run <= ?",
                                   (now,)).fetchall()
        for row in due:
            with self.db.write() as conn:  # this worker takes the period only if no other took it first
                taken = conn.execute("UPDATE task_schedules SET next_run = ? WHERE id = ? AND next_run = ?",
                                     (self._next(row["every_seconds"], row["cron"], now), row["id"],
                                      row["next_run"])).rowcount
            if not taken:
                continue
            busy = row["last_task"] and self.db.conn.execute(
                "SELECT 1 FROM tasks WHERE id = ? AND status IN ('PENDING', 'RUNNING', 'TIMED_OUT')",
                (row["last_task"],)).fetchone()
            if not busy:
                self._publish(row["id"], json.loads(row["spec"]))
                published += 1
        return published

    def cancel(self, schedule_id: str) -> bool:
        with self.db.write() as conn:
            return conn.execute("UPDATE task_schedules SET enabled = 0 WHERE id = ?", (schedule_id,)).rowcount == 1
