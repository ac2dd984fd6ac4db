"""The real PostgreSQL and Redis the machine runs, for tests that use them over real connections.

``HEABLCOIN_TEST_DATABASE_URL`` / ``HEABLCOIN_TEST_REDIS_URL`` name them (defaults: the local
services, trust auth). Unreachable: the test is skipped with the reason — unless ``CI=true``, where
an unreachable service fails the run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest

DATABASE_URL = os.environ.get("HEABLCOIN_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HEABLCOIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, reason: str) -> None:
    message = f"{what} unreachable ({reason}); set HEABLCOIN_TEST_DATABASE_URL / HEABLCOIN_TEST_REDIS_URL"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose tables live in a fresh schema of their own, dropped (with everything in it) after."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).strip().splitlines()[0])
    schema = f"t_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield with_search_path(DATABASE_URL, schema)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the test Redis; its keys are deleted after."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", str(exc))
    prefix = f"test:{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def stored_text(db: Any) -> str:
    """Everything a database holds, as text: for checking that a secret was never written."""
    if db.engine == "sqlite":
        return "\n".join(db.conn.iterdump())
    tables = [r[0] for r in db.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    return "\n".join(f"{table}: {tuple(row)!r}"
                     for table in tables for row in db.conn.execute(f"SELECT * FROM {table}"))
