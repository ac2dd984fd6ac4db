"""Queue figures for health and get_enhanced_task_stats, read in time independent of the tasks stored."""

from __future__ import annotations

from typing import Any

from heablcoin_mcp.core.storage import Storage

PRIORITY_NAMES = {1: "LOW", 2: "NORMAL", 3: "HIGH", 4: "URGENT"}


def task_stats(db: Storage, now: float) -> dict[str, Any]:
    """Counts come from ``task_counts``, kept by triggers in the same transactions as the tasks, so
    the cost does not grow with the tasks stored; the rest reads a bounded slice through an index."""
    conn = db.conn
    by_status = {r[0]: r[1] for r in conn.execute(
        "SELECT status, sum(n) FROM task_counts GROUP BY status HAVING sum(n) > 0")}
    by_priority = {PRIORITY_NAMES[r[0]]: r[1] for r in conn.execute(
        "SELECT priority, sum(n) FROM task_counts GROUP BY priority HAVING sum(n) > 0")}
    # the oldest task ready to run: the head of each priority's line in the claim index
    oldest = min((row[0] for level in PRIORITY_NAMES for row in conn.execute(
        "SELECT created_at FROM tasks INDEXED BY tasks_claimable WHERE status IN ('PENDING', 'TIMED_OUT') AND "
        "pending_parents = 0 AND priority = ? ORDER BY seq LIMIT 1", (level,))), default=None)
    runs = sorted(r[0] for r in conn.execute(
        "SELECT completed_at - started_at FROM tasks INDEXED BY tasks_completed WHERE status = 'COMPLETED' AND "
        "started_at IS NOT NULL ORDER BY completed_at DESC LIMIT 1000"))
    completed_since = ("SELECT count(*) FROM tasks INDEXED BY tasks_completed WHERE status = 'COMPLETED' AND "
                       "completed_at >= ?")
    done_minute = conn.execute(completed_since, (now - 60,)).fetchone()[0]
    done_hour = conn.execute(completed_since, (now - 3600,)).fetchone()[0]
    return {
        "total": sum(by_status.values()), "by_status": by_status, "by_priority": by_priority,
        "expired": by_status.get("EXPIRED", 0), "running": by_status.get("RUNNING", 0),
        "oldest_pending_age_seconds": round(now - oldest, 3) if oldest is not None else None,
        "avg_run_seconds": round(sum(runs) / len(runs), 4) if runs else None,
        "p95_run_seconds": round(runs[int(0.95 * (len(runs) - 1))], 4) if runs else None,
        "completed_last_minute": done_minute, "completed_last_hour": done_hour,
    }
