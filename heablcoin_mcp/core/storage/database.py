"""The one way to reach SQLite.

Connections are opened per thread (sqlite3 connections must not cross threads) with the pragmas
set where they are opened. Writes go through ``transaction()``: a short ``BEGIN IMMEDIATE`` that
commits or rolls back and never hides the original error. Never hold one across network I/O.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from heablcoin_mcp.core.monitor.health import ComponentHealth, DatabaseInfo
from heablcoin_mcp.core.storage.connections import ThreadConnections
from heablcoin_mcp.core.storage.migrations import MIGRATIONS, Migration
from heablcoin_mcp.errors import Busy, ConfigError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
DAMAGED_HINT = ("Move the file aside (a new database is created at the next start) or restore a backup; "
                "`heablcoin-mcp doctor` checks it.")
# Negative cache_size is in KiB: 16 MiB of page cache per connection.
CACHE_SIZE_KIB = 16 * 1024


def is_lock_contention(exc: BaseException) -> bool:
    """SQLite's answer when another connection held the write lock past busy_timeout."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def busy(exc: sqlite3.OperationalError) -> Busy:
    return Busy("the database is busy: another process holds its write lock; nothing was changed",
                hint="Retry in a few seconds. If it persists, look for a process holding heablcoin.db open.")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a write transaction with BEGIN IMMEDIATE; commit on success, roll back on any error.

    Raises:
        Busy: another connection held the write lock past busy_timeout (contention, not a bug).
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_lock_contention(exc):
            raise busy(exc) from exc
        raise
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    try:
        conn.commit()
    except sqlite3.OperationalError as exc:
        conn.rollback()
        if is_lock_contention(exc):
            raise busy(exc) from exc
        raise


class Database:
    engine = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = path
        self.location = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.migrations = tuple(migrations)
        self._connections: ThreadConnections[sqlite3.Connection] = ThreadConnections(self.connect)

    def connect(self) -> sqlite3.Connection:
        """A new connection with the house pragmas; the caller owns it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so reads never sit in an implicit transaction.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's shared connection."""
        return self._connections.get()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with transaction(self.conn) as conn:
            yield conn

    def notify(self, conn: sqlite3.Connection, channel: str) -> None:
        """Nothing to do: SQLite workers find new work by polling."""

    def listener(self, channel: str) -> None:
        return None

    def migrate(self) -> int:
        """Apply pending migrations; safe to run twice and from two processes at once.

        The version is re-read inside BEGIN IMMEDIATE, so a second process that waited for the
        first one's lock sees the new version and applies nothing.
        """
        self.verify()
        conn = self.conn
        applied = 0
        for migration in self.migrations:
            with transaction(conn):
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                if not migration.due(current):
                    continue
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {migration.version}")
                applied += 1
                log.info("applied migration %d (%s)", migration.version, migration.name)
        return applied

    def verify(self, *, thorough: bool = False) -> None:
        """Check that this build can use the database, before anything is served from it. The file
        is only read (a database from a newer build must stay exactly as it is).

        ``thorough`` also reads every page (``PRAGMA quick_check``), as ``doctor`` does.

        Raises:
            ConfigError: one line naming the file, what is wrong and what to do.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=".heablcoin-check-"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot write in {self.path.parent}: {exc.strerror or exc}",
                              hint="Make HEABLCOIN_HOME a writable folder, or point it elsewhere.") from None
        if not self.path.exists():
            return
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0] if thorough else "ok"
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a usable heablcoin database: {exc}", hint=DAMAGED_HINT) from None
        if verdict != "ok":
            raise ConfigError(f"{self.path} is damaged: {verdict}", hint=DAMAGED_HINT)
        latest = self.migrations[-1].version
        if version > latest:
            raise ConfigError(f"{self.path} has schema v{version}, written by a newer heablcoin-mcp (this one "
                              f"knows up to v{latest}); nothing was changed",
                              hint="Upgrade heablcoin-mcp, or point HEABLCOIN_HOME at another folder.")
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"cannot write {self.path}", hint="Make the file writable, or point HEABLCOIN_HOME "
                                                                "elsewhere.")

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def journal_mode(self) -> str:
        return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0])

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, _sibling(self.path, "-wal")) if p.exists())

    def health(self) -> tuple[DatabaseInfo | None, ComponentHealth]:
        """What the database is and whether its schema is the one this build expects; never raises."""
        try:
            info = DatabaseInfo(path=str(self.path), engine="sqlite", journal_mode=self.journal_mode(),
                                synchronous=self.synchronous, schema_version=self.schema_version(),
                                size_bytes=self.size_bytes())
        except Exception as exc:  # health must report, not raise
            log.exception("database health check failed")
            return None, ComponentHealth(name="database", status="down", detail=type(exc).__name__)
        expected = self.migrations[-1].version
        if info.schema_version != expected:
            detail = f"schema v{info.schema_version}, expected v{expected}"
            return info, ComponentHealth(name="database", status="degraded", detail=detail)
        return info, ComponentHealth(name="database", status="ok", detail=f"schema v{expected}")

    def close(self) -> None:
        self._connections.close_all(sqlite3.Connection.close)


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT our open transaction, so statements run one by one.
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)
