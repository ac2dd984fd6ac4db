"""Numbered schema migrations, tracked by ``PRAGMA user_version``.

Append only: a released migration never changes. Each one runs inside the same ``BEGIN IMMEDIATE``
transaction that bumps ``user_version``, so a crash leaves either all of it or none of it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def due(self, current: int) -> bool:
        """Must this migration run on a schema at version ``current``? (False: already applied.)

        Raises:
            RuntimeError: it does not follow ``current`` (a gap in the numbers).
        """
        if self.version <= current:
            return False
        if self.version != current + 1:
            raise RuntimeError(f"migration {self.version} cannot follow schema version {current}")
        return True


TASK_COLUMNS = ("seq, id, name, payload, priority, tags, status, created_at, updated_at, started_at, "
                "completed_at, attempts, max_retries, timeout, expires_at, run_after, pending_parents, "
                "result, error, schedule_id, callback_url, worker_id, lease_until")

# The same statements in both dialects: pg_migrations.py lists this one too.
PARTIAL_TASK_INDEXES = Migration(
    10,
    "partial_task_indexes",
    # Each read the queue makes gets an index holding only the rows it looks for, so a task is
    # in as few indexes as its state needs: a new PENDING task no longer enters tasks_running or
    # tasks_by_update. Pushes for tasks/<id> read the stamps of the watched tasks by id instead of
    # every task updated since the last look (core/changes.py); listing by status scans by seq.
    """
    DROP INDEX tasks_by_update;
    DROP INDEX tasks_running;
    CREATE INDEX tasks_leased ON tasks(lease_until) WHERE status = 'RUNNING';
    CREATE INDEX tasks_expiring ON tasks(expires_at)
        WHERE expires_at IS NOT NULL AND status IN ('PENDING', 'TIMED_OUT');
    CREATE INDEX tasks_dead ON tasks(completed_at) WHERE status IN ('FAILED', 'CANCELLED', 'EXPIRED');
    CREATE INDEX tasks_price_alerts ON tasks(seq) WHERE name = 'price_alert' AND status = 'PENDING';
    """,
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "kv",
        """
        CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "trading",
        """
        CREATE TABLE accounts (
            name TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
            exchange TEXT NOT NULL,
            api_key_env TEXT,
            secret_env TEXT,
            password_env TEXT,
            weight REAL NOT NULL DEFAULT 1 CHECK (weight > 0),
            grp TEXT,
            created_at REAL NOT NULL
        );
        CREATE TABLE balances (
            account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
            asset TEXT NOT NULL,
            free TEXT NOT NULL,
            locked TEXT NOT NULL,
            PRIMARY KEY (account, asset)
        );
        CREATE TABLE positions (
            account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
            symbol TEXT NOT NULL,
            quantity TEXT NOT NULL,
            avg_entry TEXT NOT NULL,
            realized_pnl TEXT NOT NULL,
            fees TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (account, symbol)
        );
        CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            account TEXT NOT NULL REFERENCES accounts(name),
            client_order_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
            type TEXT NOT NULL CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
            amount TEXT,
            quote_amount TEXT,
            price TEXT,
            stop_price TEXT,
            reduce_only INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            filled TEXT NOT NULL DEFAULT '0',
            avg_price TEXT,
            fee TEXT NOT NULL DEFAULT '0',
            fee_asset TEXT,
            locked_asset TEXT,
            locked_amount TEXT NOT NULL DEFAULT '0',
            exchange_order_id TEXT,
            parent_id TEXT,
            oco_group TEXT,
            stop_loss TEXT,
            take_profit TEXT,
            triggered INTEGER NOT NULL DEFAULT 0,
            checked_until INTEGER,
            reason TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (account, client_order_id)
        );
        CREATE INDEX orders_by_status ON orders(status, account, symbol);
        CREATE TABLE fills (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            order_id TEXT NOT NULL REFERENCES orders(id),
            account TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            price TEXT NOT NULL,
            amount TEXT NOT NULL,
            fee TEXT NOT NULL,
            fee_asset TEXT NOT NULL,
            liquidity TEXT NOT NULL,
            realized_pnl TEXT NOT NULL,
            ts REAL NOT NULL
        );
        CREATE INDEX fills_by_account_time ON fills(account, ts);
        CREATE TABLE journal (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            account TEXT,
            order_id TEXT,
            event TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX journal_by_order ON journal(order_id);
        CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
        BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TABLE risk_overrides (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            reason TEXT,
            updated_at REAL NOT NULL
        );
        CREATE TABLE confirmations (
            token TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            request TEXT NOT NULL,
            preview TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL,
            outcome TEXT
        );
        CREATE INDEX confirmations_by_fingerprint ON confirmations(fingerprint, expires_at);
        """,
    ),
    Migration(
        3,
        "api_endpoints",
        """
        CREATE TABLE api_endpoints (
            name TEXT PRIMARY KEY,
            provider TEXT NOT NULL CHECK (provider IN ('openai', 'anthropic')),
            base_url TEXT NOT NULL,
            model TEXT NOT NULL,
            api_key_env TEXT NOT NULL,
            priority INTEGER NOT NULL,
            weight REAL NOT NULL,
            max_requests_per_minute INTEGER NOT NULL,
            max_tokens_per_minute INTEGER,
            timeout REAL NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            source TEXT NOT NULL DEFAULT 'tool',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    Migration(
        4,
        "tasks",
        """
        CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL UNIQUE,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            priority INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 4),
            tags TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            completed_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_retries INTEGER NOT NULL DEFAULT 3,
            timeout REAL,
            expires_at REAL,
            run_after REAL NOT NULL DEFAULT 0,
            pending_parents INTEGER NOT NULL DEFAULT 0,
            result TEXT,
            error TEXT,
            schedule_id TEXT,
            callback_url TEXT,
            worker_id TEXT,
            lease_until REAL
        );
        CREATE INDEX tasks_claimable ON tasks(priority, seq)
            WHERE status IN ('PENDING', 'TIMED_OUT') AND pending_parents = 0;
        CREATE INDEX tasks_by_status ON tasks(status);
        CREATE INDEX tasks_running ON tasks(status, lease_until);
        CREATE TABLE task_edges (
            parent TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            child TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            PRIMARY KEY (parent, child)
        );
        CREATE INDEX task_edges_by_child ON task_edges(child);
        CREATE TABLE task_schedules (
            id TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            every_seconds REAL,
            cron TEXT,
            next_run REAL NOT NULL,
            last_task TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL
        );
        CREATE TABLE webhook_deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id TEXT NOT NULL,
            url TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX webhook_due ON webhook_deliveries(status, next_attempt);
        """,
    ),
    Migration(
        5,
        "consents",
        """
        CREATE TABLE consents (
            token TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL
        );
        CREATE INDEX consents_by_action ON consents(action, expires_at);
        """,
    ),
    Migration(
        6,
        "tasks_by_update",
        """
        CREATE INDEX tasks_by_update ON tasks(updated_at);
        """,
    ),
    Migration(
        7,
        "task_counts",
        """
        CREATE TABLE task_counts (
            status TEXT NOT NULL,
            priority INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (status, priority)
        );
        INSERT INTO task_counts (status, priority, n) SELECT status, priority, count(*) FROM tasks
            GROUP BY status, priority;
        CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
            INSERT INTO task_counts (status, priority, n) VALUES (NEW.status, NEW.priority, 1)
                ON CONFLICT (status, priority) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status AND priority = OLD.priority;
        END;
        CREATE TRIGGER task_counts_update AFTER UPDATE OF status, priority ON tasks
            WHEN OLD.status != NEW.status OR OLD.priority != NEW.priority BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status AND priority = OLD.priority;
            INSERT INTO task_counts (status, priority, n) VALUES (NEW.status, NEW.priority, 1)
                ON CONFLICT (status, priority) DO UPDATE SET n = n + 1;
        END;
        CREATE INDEX tasks_completed ON tasks(completed_at) WHERE status = 'COMPLETED';
        """,
    ),
    Migration(
        8,
        "leaner_task_writes",
        # publish() adds a whole batch to task_counts in one statement per priority (a trigger per
        # inserted row was a third of a durable batch); updates and deletes keep their triggers.
        # tasks_by_status repeated the first column of tasks_running: one index less to write.
        """
        DROP TRIGGER task_counts_insert;
        DROP INDEX tasks_by_status;
        """,
    ),
    Migration(
        9,
        "tasks_keyed_by_seq",
        # The table's own key is now seq (SQLite's rowid): a new task takes the next one from the end
        # of the table it is written into, where a unique index on seq and a counter row were two
        # more pages to write per publish. task_edges is rebuilt so its keys point at the new table
        # (renaming tasks made them follow the old one); dropping a table fires no triggers.
        f"""
        ALTER TABLE tasks RENAME TO tasks_v8;
        CREATE TABLE tasks (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            priority INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 4),
            tags TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            completed_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_retries INTEGER NOT NULL DEFAULT 3,
            timeout REAL,
            expires_at REAL,
            run_after REAL NOT NULL DEFAULT 0,
            pending_parents INTEGER NOT NULL DEFAULT 0,
            result TEXT,
            error TEXT,
            schedule_id TEXT,
            callback_url TEXT,
            worker_id TEXT,
            lease_until REAL
        );
        INSERT INTO tasks ({TASK_COLUMNS})
            SELECT {TASK_COLUMNS} FROM tasks_v8 ORDER BY seq;
        ALTER TABLE task_edges RENAME TO task_edges_v8;
        CREATE TABLE task_edges (
            parent TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            child TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            PRIMARY KEY (parent, child)
        );
        INSERT INTO task_edges (parent, child) SELECT parent, child FROM task_edges_v8;
        DROP TABLE task_edges_v8;
        DROP TABLE tasks_v8;
        CREATE INDEX task_edges_by_child ON task_edges(child);
        CREATE INDEX tasks_claimable ON tasks(priority, seq)
            WHERE status IN ('PENDING', 'TIMED_OUT') AND pending_parents = 0;
        CREATE INDEX tasks_running ON tasks(status, lease_until);
        CREATE INDEX tasks_by_update ON tasks(updated_at);
        CREATE INDEX tasks_completed ON tasks(completed_at) WHERE status = 'COMPLETED';
        CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status AND priority = OLD.priority;
        END;
        CREATE TRIGGER task_counts_update AFTER UPDATE OF status, priority ON tasks
            WHEN OLD.status != NEW.status OR OLD.priority != NEW.priority BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status AND priority = OLD.priority;
            INSERT INTO task_counts (status, priority, n) VALUES (NEW.status, NEW.priority, 1)
                ON CONFLICT (status, priority) DO UPDATE SET n = n + 1;
        END;
        DELETE FROM counters WHERE name = 'task_seq';
        """,
    ),
    PARTIAL_TASK_INDEXES,
)
