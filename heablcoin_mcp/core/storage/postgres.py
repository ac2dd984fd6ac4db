"""PostgreSQL as the shared engine, behind the same interface as the embedded SQLite ``Database``.

The services write their SQL once, in the dialect both engines share; ``translate`` turns the few
SQLite spellings they use into PostgreSQL's (``?`` placeholders, ``INDEXED BY`` planner hints,
``json_each``). Rows read like ``sqlite3.Row``: by name, by position, unpacked.

Write transactions take one advisory lock first, so writers run one at a time exactly as they do on
SQLite (``BEGIN IMMEDIATE``): every read-then-write the services do stays correct, and the journal's
sequence numbers commit in order (the change feed reads ``seq > last``). Claims still lock their row
with ``FOR UPDATE SKIP LOCKED``. Readers never wait for writers.

Connections are opened per thread, like SQLite's, and kept (a pool keyed by thread).
"""

from __future__ import annotations

import functools
import logging
import re
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from heablcoin_mcp.core.monitor.health import ComponentHealth, DatabaseInfo
from heablcoin_mcp.core.redact import mask_url
from heablcoin_mcp.core.storage.connections import ThreadConnections
from heablcoin_mcp.core.storage.migrations import Migration
from heablcoin_mcp.core.storage.pg_migrations import PG_MIGRATIONS
from heablcoin_mcp.errors import Busy, ConfigError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# pg_advisory_xact_lock keys (any bigint; these spell "heabl" + a purpose)
WRITE_LOCK = 0x68656162_6C000001
MIGRATION_LOCK = 0x68656162_6C000002
LOCK_TIMEOUT_MS = 10_000
CHANNEL_PREFIX = "heablcoin_"
INSTALL_HINT = "pip install 'heablcoin-mcp[postgresql]' (psycopg 3) to use HEABLCOIN_DATABASE_URL"

_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%|\bINDEXED BY \w+|\bjson_each\(([\w.]+)\)", re.IGNORECASE)


class PgIntegrityError(Exception):
    """A constraint refused a write (unique, foreign key, check): PostgreSQL's sqlite3.IntegrityError."""


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite-flavoured SQL as PostgreSQL reads it; quoted literals are left as they are."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("'"):
            return token.replace("%", "%%")
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1):  # json_each(col) yields rows with a ``value`` column
            return f"json_array_elements_text(({match.group(1)})::json) AS json_each(value)"
        return ""  # INDEXED BY: a SQLite planner hint; PostgreSQL's planner picks the partial index itself

    return _TOKENS.sub(one, sql)


class Row:
    """A result row readable by column name, by position and by unpacking, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


def _params(params: Sequence[Any]) -> list[Any]:
    # SQLite stores booleans as 0/1 in INTEGER columns; PostgreSQL would refuse a boolean there.
    return [int(p) if isinstance(p, bool) else p for p in params]


class PgConnection:
    """The slice of ``sqlite3.Connection`` the services use, over one psycopg connection."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        # A thread's connection opened after Database.close() (a request still finishing) has no
        # other owner: it is closed with its last reference, as sqlite3 does. (A finalizer, not
        # __del__: the garbage collector may finalize the psycopg connection first.)
        weakref.finalize(self, raw.close)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with _translated_errors():
            return self.raw.execute(translate(sql), _params(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _translated_errors(), self.raw.cursor() as cursor:
            cursor.executemany(translate(sql), [_params(r) for r in rows])

    def close(self) -> None:
        self.raw.close()


@contextmanager
def _translated_errors() -> Iterator[None]:
    """psycopg's refusals in the product's words: a constraint, or a lock held too long (Busy)."""
    import psycopg

    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise PgIntegrityError(str(exc)) from exc
    except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected,
            psycopg.errors.SerializationFailure) as exc:
        raise _busy() from exc


def _busy() -> Busy:
    return Busy("the database is busy: another process held a lock past the lock timeout; nothing was changed",
                hint="Retry in a few seconds.")


class PostgresDatabase:
    engine = "postgresql"

    def __init__(self, url: str, *, migrations: Sequence[Migration] = PG_MIGRATIONS,
                 lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> None:
        self.url = url
        self.location = mask_url(url) or url
        self.migrations = tuple(migrations)
        self.lock_timeout_ms = lock_timeout_ms
        self._connections: ThreadConnections[PgConnection] = ThreadConnections(
            self.connect, lambda c: not (c.raw.closed or c.raw.broken))

    def connect(self) -> PgConnection:
        """A new autocommit connection (reads see committed data at once); the caller owns it."""
        try:
            import psycopg
        except ImportError:
            raise ConfigError("HEABLCOIN_DATABASE_URL names PostgreSQL but psycopg is not installed",
                              hint=INSTALL_HINT) from None
        try:
            raw = psycopg.connect(self.url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot reach the database at {self.location}: {_first_line(exc)}",
                              hint="Check HEABLCOIN_DATABASE_URL and that PostgreSQL is running.") from None
        raw.execute(f"SET lock_timeout = {int(self.lock_timeout_ms)}")
        return PgConnection(raw)

    @property
    def conn(self) -> PgConnection:
        """This thread's shared connection; a broken one is replaced."""
        return self._connections.get()

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One write transaction, after every other writer (see the module docstring)."""
        conn = self.conn
        try:
            with _translated_errors():  # BEGIN and the lock in one round trip; past lock_timeout: Busy
                conn.raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            yield conn
        except BaseException:
            if not conn.raw.broken:  # a lost connection is replaced on the next use (``conn``)
                conn.raw.rollback()
            raise
        with _translated_errors():
            conn.raw.commit()

    def notify(self, conn: PgConnection, channel: str) -> None:
        """Wake listeners of ``channel`` when the current transaction commits."""
        conn.execute(f"NOTIFY {CHANNEL_PREFIX}{channel}")

    def listener(self, channel: str) -> Listener:
        return Listener(self, channel)

    def migrate(self) -> int:
        """Apply pending migrations; several processes starting at once apply each one once (a
        session advisory lock is held while the version is read and bumped)."""
        self.verify()
        conn = self.conn
        applied = 0
        conn.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS heablcoin_schema (version INTEGER NOT NULL)")
            for migration in self.migrations:
                with conn.raw.transaction():
                    current = self._version(conn)
                    if not migration.due(current):
                        continue
                    conn.raw.execute(migration.sql)  # PostgreSQL runs several statements in one simple query
                    conn.execute("DELETE FROM heablcoin_schema")
                    conn.execute("INSERT INTO heablcoin_schema (version) VALUES (?)", (migration.version,))
                    applied += 1
                    log.info("applied migration %d (%s)", migration.version, migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))
        return applied

    @staticmethod
    def _version(conn: PgConnection) -> int:
        exists = conn.execute("SELECT to_regclass('heablcoin_schema') IS NOT NULL").fetchone()[0]
        if not exists:
            return 0
        row = conn.execute("SELECT max(version) FROM heablcoin_schema").fetchone()
        return int(row[0] or 0)

    def verify(self, *, thorough: bool = False) -> None:
        """Reachable, and not written by a newer build. Raises ConfigError (one line, what to do)."""
        version = self._version(self.conn)
        latest = self.migrations[-1].version
        if version > latest:
            raise ConfigError(f"{self.location} has schema v{version}, written by a newer heablcoin-mcp (this one "
                              f"knows up to v{latest}); nothing was changed", hint="Upgrade heablcoin-mcp.")

    def schema_version(self) -> int:
        return self._version(self.conn)

    def health(self) -> tuple[DatabaseInfo | None, ComponentHealth]:
        try:
            started = time.perf_counter()
            conn = self.conn
            version = self._version(conn)
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            latency_ms = (time.perf_counter() - started) * 1000
        except Exception as exc:  # health must report, not raise
            log.exception("database health check failed")
            return None, ComponentHealth(name="database", status="down", detail=type(exc).__name__)
        open_connections = sum(not c.raw.closed for c in self._connections.opened())
        info = DatabaseInfo(path=self.location, engine="postgresql", schema_version=version, size_bytes=size)
        metrics = {"latency_ms": round(latency_ms, 2), "open_connections": open_connections}
        expected = self.migrations[-1].version
        if version != expected:
            return info, ComponentHealth(name="database", status="degraded",
                                         detail=f"schema v{version}, expected v{expected}", metrics=metrics)
        return info, ComponentHealth(name="database", status="ok", detail=f"postgresql, schema v{expected}",
                                     metrics=metrics)

    def close(self) -> None:
        self._connections.close_all(PgConnection.close)


class Listener:
    """LISTEN on one channel over an async connection of its own (psycopg's asyncio connection)."""

    def __init__(self, db: PostgresDatabase, channel: str) -> None:
        self.db = db
        self.channel = f"{CHANNEL_PREFIX}{channel}"
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def wait(self, timeout: float) -> bool:
        """True when a notification arrived within ``timeout`` seconds, False when none did."""
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.db.url, autocommit=True, connect_timeout=10)
            await self._conn.execute(f"LISTEN {self.channel}")
        async for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
