from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from heablcoin_mcp.core.storage import MIGRATIONS, Database, Migration, transaction

COUNTING_MIGRATIONS = (
    Migration(1, "log", "CREATE TABLE applied (n INTEGER);\nINSERT INTO applied VALUES (1);"),
    Migration(2, "more", "INSERT INTO applied VALUES (2);"),
)


def test_fresh_database_gets_every_migration_and_the_house_pragmas(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", synchronous="FULL")
    assert db.migrate() == len(MIGRATIONS)
    conn = db.conn
    assert db.schema_version() == MIGRATIONS[-1].version
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    db.close()


def test_migrating_twice_applies_nothing_the_second_time(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", migrations=COUNTING_MIGRATIONS)
    assert db.migrate() == 2
    assert db.migrate() == 0
    assert [r[0] for r in db.conn.execute("SELECT n FROM applied ORDER BY n")] == [1, 2]
    db.close()


def test_a_new_migration_applies_on_top_of_an_old_schema(tmp_path: Path) -> None:
    old = Database(tmp_path / "x.db", migrations=COUNTING_MIGRATIONS[:1])
    old.migrate()
    old.close()
    new = Database(tmp_path / "x.db", migrations=COUNTING_MIGRATIONS)
    assert new.migrate() == 1
    assert new.schema_version() == 2
    new.close()


def test_a_failing_migration_leaves_the_schema_untouched(tmp_path: Path) -> None:
    broken = (*COUNTING_MIGRATIONS, Migration(3, "broken", "INSERT INTO applied VALUES (3);\nSELECT * FROM nope;"))
    db = Database(tmp_path / "x.db", migrations=broken)
    with pytest.raises(sqlite3.OperationalError, match="no such table: nope"):
        db.migrate()
    assert db.schema_version() == 2
    assert [r[0] for r in db.conn.execute("SELECT n FROM applied")] == [1, 2]
    db.close()


def test_a_gap_in_migration_numbers_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", migrations=(COUNTING_MIGRATIONS[0], Migration(3, "gap", "SELECT 1;")))
    with pytest.raises(RuntimeError, match="cannot follow schema version 1"):
        db.migrate()
    db.close()


def test_transaction_rolls_back_and_keeps_the_original_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db")
    db.migrate()
    with pytest.raises(ZeroDivisionError), transaction(db.conn) as conn:
        conn.execute("INSERT INTO kv VALUES ('a', '1', 0)")
        _ = 1 / 0
    assert db.conn.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
    with db.write() as conn:
        conn.execute("INSERT INTO kv VALUES ('a', '1', 0)")
    assert db.conn.execute("SELECT value FROM kv").fetchone()[0] == "1"
    db.close()


MIGRATE_IN_CHILD = """
import sys
from pathlib import Path
from heablcoin_mcp.core.storage import Database, Migration
migrations = (
    Migration(1, "log", "CREATE TABLE applied (n INTEGER);\\nINSERT INTO applied VALUES (1);"),
    Migration(2, "more", "INSERT INTO applied VALUES (2);"),
)
db = Database(Path(sys.argv[1]), migrations=migrations)
print(db.migrate())
"""


def test_processes_starting_at_once_apply_each_migration_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    children = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_IN_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    applied = [int(child.communicate(timeout=60)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert sum(applied) == 2
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT n FROM applied ORDER BY n")] == [1, 2]
