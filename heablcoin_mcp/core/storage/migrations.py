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
)
