"""Durable state: one interface (``Storage``), two engines — embedded SQLite (WAL), the default that
needs nothing installed, and PostgreSQL for several servers and workers sharing one database."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

from heablcoin_mcp.core.monitor.health import ComponentHealth, DatabaseInfo
from heablcoin_mcp.core.storage import postgres
from heablcoin_mcp.core.storage.database import BUSY_TIMEOUT_MS, Database, transaction
from heablcoin_mcp.core.storage.migrations import MIGRATIONS, Migration
from heablcoin_mcp.core.storage.postgres import PgIntegrityError, PostgresDatabase

# What a refused constraint raises on either engine.
IntegrityError = (sqlite3.IntegrityError, PgIntegrityError)
# A result row on either engine: by name, by position, unpacked.
Row: TypeAlias = sqlite3.Row | postgres.Row


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


class Listener(Protocol):
    async def wait(self, timeout: float) -> bool: ...

    async def aclose(self) -> None: ...


class Storage(Protocol):
    """What the services rely on; ``Database`` (SQLite) and ``PostgresDatabase`` provide it."""

    engine: Literal["sqlite", "postgresql"]
    location: str

    @property
    def conn(self) -> Any: ...

    def write(self) -> AbstractContextManager[Any]: ...

    def notify(self, conn: Any, channel: str) -> None: ...

    def listener(self, channel: str) -> Listener | None: ...

    def migrate(self) -> int: ...

    def verify(self, *, thorough: bool = False) -> None: ...

    def schema_version(self) -> int: ...

    def health(self) -> tuple[DatabaseInfo | None, ComponentHealth]: ...

    def close(self) -> None: ...


def open_storage(url: str | None, path: Path, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Storage:
    """PostgreSQL when ``url`` names it, else the SQLite file at ``path``."""
    if url:
        return PostgresDatabase(url, lock_timeout_ms=busy_timeout_ms)
    return Database(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)


__all__ = ["MIGRATIONS", "Connection", "Database", "IntegrityError", "Migration", "PostgresDatabase", "Row", "Storage",
           "open_storage", "transaction"]
