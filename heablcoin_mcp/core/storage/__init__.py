"""SQLite (WAL) storage: one connection factory, one transaction helper, numbered migrations."""

from heablcoin_mcp.core.storage.database import Database, transaction
from heablcoin_mcp.core.storage.migrations import MIGRATIONS, Migration

__all__ = ["MIGRATIONS", "Database", "Migration", "transaction"]
