"""The order journal: append-only (SQLite triggers refuse UPDATE and DELETE).

Every order writes ``intent`` in its own committed transaction before anything is sent, then one
entry per outcome (sent, filled, cancelled, rejected, declined, expired, outcome_unknown, ...).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from heablcoin_mcp.core.storage import Connection, Storage


class JournalEntry(BaseModel):
    seq: int
    ts: float
    account: str | None
    order_id: str | None
    event: str
    detail: dict[str, Any]


MAX_DETAIL_CHARS = 8_000  # an entry is a record of what happened, never a copy of a large input


def append(conn: Connection, ts: float, event: str, *, account: str | None = None,
           order_id: str | None = None, **detail: Any) -> None:
    text = json.dumps(detail, default=str, sort_keys=True)
    if len(text) > MAX_DETAIL_CHARS:
        text = json.dumps({"summary": text[:MAX_DETAIL_CHARS // 2], "truncated_from_chars": len(text)})
    conn.execute("INSERT INTO journal (ts, account, order_id, event, detail) VALUES (?, ?, ?, ?, ?)",
                 (ts, account, order_id, event, text))


def recent(db: Storage, *, limit: int = 50, account: str | None = None,
           order_id: str | None = None) -> list[JournalEntry]:
    clauses, params = [], []
    for column, value in (("account", account), ("order_id", order_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.conn.execute(f"SELECT * FROM journal{where} ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
    return [JournalEntry(seq=r["seq"], ts=r["ts"], account=r["account"], order_id=r["order_id"], event=r["event"],
                         detail=json.loads(r["detail"])) for r in rows]
