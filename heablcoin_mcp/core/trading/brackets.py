"""Brackets: the stop-loss / take-profit pair attached to a filled paper buy, one cancelling the other."""

from __future__ import annotations

import secrets
from decimal import Decimal

from heablcoin_mcp.core.books import journal, ledger
from heablcoin_mcp.core.books.models import OrderView
from heablcoin_mcp.core.books.money import text
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Connection, Storage
from heablcoin_mcp.core.trading.records import OPEN_STATUSES, cancel_row


def attach(db: Storage, clock: Clock, parent: OrderView) -> list[str]:
    """Once a buy with stop-loss / take-profit has filled, protect it with a one-cancels-other pair;
    returns the ids of the orders attached."""
    row = db.conn.execute("SELECT stop_loss, take_profit FROM orders WHERE id = ?", (parent.id,)).fetchone()
    if parent.status != "filled" or not (row["stop_loss"] or row["take_profit"]):
        return []
    now = clock.now()
    children = []
    base = parent.symbol.split("/")[0]
    amount = Decimal(parent.filled)
    with db.write() as conn:
        ledger.lock(conn, parent.account, base, amount)  # once for the pair: only one leg can ever sell them
        for kind, price_column, level in (
            ("stop", "stop_price", row["stop_loss"]),
            ("limit", "price", row["take_profit"]),
        ):
            if not level:
                continue
            child_id = f"ord_{secrets.token_hex(8)}"
            conn.execute(
                f"INSERT INTO orders (id, account, client_order_id, symbol, side, type, amount, {price_column},"
                " reduce_only, status, parent_id, oco_group, checked_until, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'sell', ?, ?, ?, 1, 'open', ?, ?, ?, ?, ?)",
                (
                    child_id,
                    parent.account,
                    f"{parent.client_order_id}-{kind[:2]}",
                    parent.symbol,
                    kind,
                    parent.filled,
                    level,
                    parent.id,
                    parent.id,
                    int(now * 1000),
                    now,
                    now,
                ),
            )
            if not children:  # the first leg holds the pair's lock; the one that acts takes it over
                conn.execute("UPDATE orders SET locked_asset = ?, locked_amount = ? WHERE id = ?",
                             (base, text(amount), child_id))
            journal.append(
                conn,
                now,
                "attached",
                account=parent.account,
                order_id=child_id,
                parent=parent.id,
                kind="stop_loss" if kind == "stop" else "take_profit",
                level=level,
            )
            children.append(child_id)
    return children


def cancel_siblings(conn: Connection, group: str, filled_id: str, now: float) -> None:
    for sibling in conn.execute(
        f"SELECT * FROM orders WHERE oco_group = ? AND id != ? AND status IN {OPEN_STATUSES}", (group, filled_id)
    ).fetchall():
        cancel_row(conn, sibling, f"one-cancels-other: {filled_id} filled", now)
