"""Moving up: copy the embedded SQLite database into an empty PostgreSQL one, ids kept, then check.

Everything is copied in one PostgreSQL transaction (a failure leaves the target empty). The journal
is copied as it is (its triggers refuse only updates and deletes); ``task_counts`` is rebuilt from the
copied tasks, and compared. Identity counters continue after the
copied ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heablcoin_mcp.core.storage.database import Database
from heablcoin_mcp.core.storage.postgres import PgConnection, PostgresDatabase
from heablcoin_mcp.errors import InvalidInput

# Parents before children (foreign keys); every table of the schema but the derived task_counts.
TABLES = ("kv", "accounts", "balances", "positions", "orders", "fills", "journal", "risk_overrides",
          "confirmations", "api_endpoints", "counters", "tasks", "task_edges", "task_schedules",
          "webhook_deliveries", "consents")
IDENTITY = {"fills": "id", "journal": "seq", "tasks": "seq", "webhook_deliveries": "id"}
DERIVED = ("task_counts",)
BATCH = 2_000


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    balances_checked: int = 0

    def lines(self) -> list[str]:
        copied = ", ".join(f"{table} {n}" for table, n in self.rows.items() if n)
        return [f"copied {sum(self.rows.values())} rows ({copied or 'none'})",
                f"verified: row counts of {len(self.rows)} tables, task counts, and {self.balances_checked} "
                "balances and positions exactly"]


def copy_database(source: Database, target: PostgresDatabase) -> CopyReport:
    """Copy every table of ``source`` into ``target`` and verify the copy.

    Raises:
        InvalidInput: the target already holds data, or the copy does not match (nothing is kept).
    """
    source.migrate()
    target.migrate()
    holding = [t for t in (*TABLES, *DERIVED) if target.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]]
    if holding:
        raise InvalidInput(f"the target database already holds data ({', '.join(holding)}); nothing was copied",
                           hint="Copy into a new, empty database (or schema).")
    report = CopyReport()
    with target.write() as conn:
        for table in TABLES:
            columns = [r[1] for r in source.conn.execute(f"PRAGMA table_info({table})")]
            insert = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")
            cursor = source.conn.execute(f"SELECT {', '.join(columns)} FROM {table}")
            copied = 0
            while rows := cursor.fetchmany(BATCH):
                conn.executemany(insert, [tuple(r) for r in rows])
                copied += len(rows)
            report.rows[table] = copied
        conn.execute("INSERT INTO task_counts (status, priority, n) SELECT status, priority, count(*) FROM tasks "
                     "GROUP BY status, priority")
        for table, column in IDENTITY.items():
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                         f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)")
        _verify(source, conn, report)
    return report


def _verify(source: Database, conn: PgConnection, report: CopyReport) -> None:
    """Inside the copy's transaction: a mismatch raises and the copy is rolled back. Rows are
    sorted here, not by ORDER BY (the engines collate text differently)."""
    for table in (*TABLES, *DERIVED):
        there = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        here = source.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if there != here:
            raise InvalidInput(f"copy check failed: {table} has {there} rows, the source {here}; nothing was kept")
    checks = {
        "task counts": "SELECT status, priority, n FROM task_counts WHERE n != 0",
        "balances": "SELECT account, asset, free, locked FROM balances",
        "positions": "SELECT account, symbol, quantity, avg_entry, realized_pnl, fees FROM positions",
    }
    for what, query in checks.items():
        mine = sorted(tuple(r) for r in source.conn.execute(query))
        if mine != sorted(tuple(r) for r in conn.execute(query)):
            raise InvalidInput(f"copy check failed: {what} differ; nothing was kept")
        if what != "task counts":
            report.balances_checked += len(mine)
