"""What changed since the last look, named as resource paths.

Read from the database rather than hooked into the services, so a change made by another process
(a worker finishing a task, the CLI leaving HALTED) counts the same as one made here. The paths are
the server's resource URIs without the scheme: ``journal/recent``, ``risk/limits``,
``portfolio/<account>``, ``orders/open``, ``tasks/<id>``.
"""

from __future__ import annotations

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Storage

JOURNAL = "journal/recent"
RISK = "risk/limits"
OPEN_ORDERS = "orders/open"
RISK_EVENTS = frozenset({"risk_limits_changed", "trading_state_changed"})
# A preview or an unused token's expiry changes no balance, position or order.
NOT_PORTFOLIO_EVENTS = frozenset({"previewed", "expired"})
# Another process may commit a task update stamped a little before our last look; look back this far.
TASK_LOOKBACK_SECONDS = 5.0


def portfolio_path(account: str) -> str:
    return f"portfolio/{account}"


def task_path(task_id: str) -> str:
    return f"tasks/{task_id}"


class ChangeFeed:
    def __init__(self, db: Storage, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._journal_seq: int | None = None
        self._tasks_since = 0.0
        self._task_stamps: dict[str, tuple[float, str]] = {}

    def poll(self) -> list[str]:
        """Paths changed since the previous poll, each once, in the order first seen. The first poll
        only takes the starting point: what happened before anyone looked is not news."""
        if self._journal_seq is None:
            self._journal_seq = self.db.conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]
            self._tasks_since = self.clock.now()
            self._task_paths()
            return []
        return list(dict.fromkeys(self._journal_paths() + self._task_paths()))

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

    def _task_paths(self) -> list[str]:
        now = self.clock.now()
        horizon = self._tasks_since - TASK_LOOKBACK_SECONDS
        rows = self.db.conn.execute("SELECT id, updated_at, status FROM tasks WHERE updated_at > ?",
                                    (horizon,)).fetchall()
        stamps = {task_id: (updated_at, status) for task_id, updated_at, status in rows}
        changed = [task_id for task_id, stamp in stamps.items() if self._task_stamps.get(task_id) != stamp]
        self._task_stamps = stamps
        self._tasks_since = now
        return [task_path(task_id) for task_id in changed]
