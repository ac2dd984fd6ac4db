"""What changed since the last look, named as resource paths.

Read from the database rather than hooked into the services, so a change made by another process
(a worker finishing a task, the CLI leaving HALTED) counts the same as one made here. The paths are
the server's resource URIs without the scheme: ``journal/recent``, ``risk/limits``,
``portfolio/<account>``, ``orders/open``, ``tasks/<id>``. The journal is read from where the last
look ended; tasks are read by id, only the ones someone watches.
"""

from __future__ import annotations

from collections.abc import Collection

from heablcoin_mcp.core.storage import Storage

JOURNAL = "journal/recent"
RISK = "risk/limits"
OPEN_ORDERS = "orders/open"
RISK_EVENTS = frozenset({"risk_limits_changed", "trading_state_changed"})
# A preview or an unused token's expiry changes no balance, position or order.
NOT_PORTFOLIO_EVENTS = frozenset({"previewed", "expired"})
MAX_IDS_PER_READ = 500


def portfolio_path(account: str) -> str:
    return f"portfolio/{account}"


def task_path(task_id: str) -> str:
    return f"tasks/{task_id}"


class ChangeFeed:
    def __init__(self, db: Storage) -> None:
        self.db = db
        self._journal_seq: int | None = None
        self._task_stamps: dict[str, tuple[float, str] | None] = {}

    def poll(self, task_ids: Collection[str] = ()) -> list[str]:
        """Paths changed since the previous poll, each once, in the order first seen: journal events,
        then the tasks among ``task_ids`` (the watched ones) whose state moved. The first poll, and the
        first look at a task, only take the starting point: what happened before anyone looked is not
        news."""
        if self._journal_seq is None:
            self._journal_seq = self.db.conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]
            self.watch_tasks(task_ids)
            return []
        return list(dict.fromkeys(self._journal_paths() + self._task_paths(task_ids)))

    def watch_tasks(self, task_ids: Collection[str]) -> None:
        """Take these tasks' present state as their starting point (subscribing is not a change)."""
        self._task_stamps.update(self._stamps(task_ids))

    def _journal_paths(self) -> list[str]:
        rows = self.db.conn.execute("SELECT seq, account, event, order_id FROM journal WHERE seq > ? ORDER BY seq",
                                    (self._journal_seq,)).fetchall()
        paths: list[str] = []
        for seq, account, event, order_id in rows:
            self._journal_seq = seq
            paths.append(JOURNAL)
            if event in RISK_EVENTS:
                paths.append(RISK)
            if order_id and event not in NOT_PORTFOLIO_EVENTS:
                paths.append(OPEN_ORDERS)
            if account and event not in NOT_PORTFOLIO_EVENTS:
                paths.append(portfolio_path(account))
        return paths

    def _task_paths(self, task_ids: Collection[str]) -> list[str]:
        stamps = self._stamps(task_ids)
        changed = [task_id for task_id, stamp in stamps.items()
                   if task_id in self._task_stamps and self._task_stamps[task_id] != stamp]
        self._task_stamps = stamps
        return [task_path(task_id) for task_id in changed]

    def _stamps(self, task_ids: Collection[str]) -> dict[str, tuple[float, str] | None]:
        """Each task's (updated_at, status), None for one that is not (or no longer) stored."""
        ids = sorted(set(task_ids))
        stamps: dict[str, tuple[float, str] | None] = dict.fromkeys(ids)
        for start in range(0, len(ids), MAX_IDS_PER_READ):
            chunk = ids[start:start + MAX_IDS_PER_READ]
            rows = self.db.conn.execute(f"SELECT id, updated_at, status FROM tasks WHERE id IN "
                                        f"({','.join('?' * len(chunk))})", chunk).fetchall()
            stamps.update({task_id: (updated_at, status) for task_id, updated_at, status in rows})
        return stamps
