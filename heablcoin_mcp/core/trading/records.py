"""OrderRecords: the orders and fills tables as trading reads them, and the row-level writes that
every order path shares (a status change; cancelling a row and releasing what it locked)."""

from __future__ import annotations

from decimal import Decimal

from heablcoin_mcp.core.books import journal, ledger
from heablcoin_mcp.core.books.models import FillView, OrderRequest, OrderView
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Connection, Row, Storage
from heablcoin_mcp.errors import InvalidInput, NotFound

OPEN_STATUSES = ("open", "partially_filled")


class OrderRecords:
    def __init__(self, db: Storage, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def order(self, order_id: str) -> OrderView:
        row = self.db.conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown order {order_id!r}")
        return view(row)

    def existing(self, req: OrderRequest) -> OrderView | None:
        if req.client_order_id is None:
            return None
        row = self.db.conn.execute(
            "SELECT * FROM orders WHERE account = ? AND client_order_id = ?", (req.account, req.client_order_id)
        ).fetchone()
        return view(row) if row else None

    def orders(
        self, status: str = "open", symbol: str | None = None, account: str | None = None, limit: int = 50
    ) -> list[OrderView]:
        if status not in ("open", "closed", "all"):
            raise InvalidInput(f"status must be open, closed or all, got {status!r}")
        sql, params = "SELECT * FROM orders WHERE 1 = 1", []
        if status == "open":
            sql += f" AND status IN {OPEN_STATUSES}"
        elif status == "closed":
            sql += f" AND status NOT IN {OPEN_STATUSES}"
        for column, value in (
            ("symbol", symbol and symbol.strip().upper().replace("-", "/")),
            ("account", account and account.strip().lower()),
        ):
            if value:
                sql, params = sql + f" AND {column} = ?", [*params, value]
        rows = self.db.conn.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [view(r) for r in rows]

    def trades(self, account: str | None = None, symbol: str | None = None, limit: int = 50) -> list[FillView]:
        sql, params = "SELECT * FROM fills WHERE 1 = 1", []
        for column, value in (
            ("symbol", symbol and symbol.strip().upper().replace("-", "/")),
            ("account", account and account.strip().lower()),
        ):
            if value:
                sql, params = sql + f" AND {column} = ?", [*params, value]
        rows = self.db.conn.execute(sql + " ORDER BY ts DESC, id DESC LIMIT ?", (*params, limit)).fetchall()
        return [
            FillView(
                order_id=r["order_id"],
                account=r["account"],
                symbol=r["symbol"],
                side=r["side"],
                price=r["price"],
                amount=r["amount"],
                fee=r["fee"],
                fee_asset=r["fee_asset"],
                liquidity=r["liquidity"],
                realized_pnl=r["realized_pnl"],
                ts=r["ts"],
            )
            for r in rows
        ]

    def set_status(self, order_id: str, status: str, reason: str) -> None:
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT account FROM orders WHERE id = ?", (order_id,)).fetchone()
            conn.execute("UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE id = ?",
                         (status, reason, now, order_id))
            journal.append(conn, now, status, account=row["account"], order_id=order_id, reason=reason)

    def open_count(self, account: str | None = None) -> int:
        sql, params = f"SELECT count(*) FROM orders WHERE status IN {OPEN_STATUSES}", []
        if account is not None:
            sql, params = sql + " AND account = ?", [account]
        return int(self.db.conn.execute(sql, params).fetchone()[0])


def spend_token(conn: Connection, token: str, now: float, outcome: str = "confirmed") -> None:
    """Spend a confirmation token inside the caller's transaction, so the user's yes is used up by
    exactly the write that acts on it (a crash before that write leaves the token usable).

    Raises:
        InvalidInput: someone spent it first (a concurrent or replayed confirmation).
    """
    spent = conn.execute("UPDATE confirmations SET used_at = ?, outcome = ? WHERE token = ? AND used_at IS NULL",
                         (now, outcome, token)).rowcount
    if spent != 1:
        raise InvalidInput("this confirmation token was already used",
                           hint="A token confirms one order once; call place_order for another.")


def open_partner(conn: Connection, row: Row) -> Row | None:
    """The other open leg of a one-cancels-other pair, if any."""
    if not row["oco_group"]:
        return None
    return conn.execute(f"SELECT * FROM orders WHERE oco_group = ? AND id != ? AND status IN {OPEN_STATUSES}",
                        (row["oco_group"], row["id"])).fetchone()


def move_lock(conn: Connection, source: Row, target_id: str) -> None:
    """An OCO pair locks the coins once: whichever leg acts holds the lock (no ledger change)."""
    conn.execute("UPDATE orders SET locked_asset = ?, locked_amount = ? WHERE id = ?",
                 (source["locked_asset"], source["locked_amount"], target_id))
    conn.execute("UPDATE orders SET locked_amount = '0' WHERE id = ?", (source["id"],))


def cancel_row(conn: Connection, row: Row, reason: str, now: float) -> None:
    """Cancel an open order and release its funds; a leg of an OCO pair hands its lock to the other
    leg while that one is still open."""
    locked = Decimal(row["locked_amount"])
    if locked > 0:
        partner = open_partner(conn, row)
        if partner is not None:
            move_lock(conn, row, partner["id"])
        else:
            ledger.unlock(conn, row["account"], row["locked_asset"], locked)
    conn.execute(
        "UPDATE orders SET status = 'cancelled', locked_amount = '0', reason = ?, updated_at = ? WHERE id = ?",
        (reason, now, row["id"]),
    )
    journal.append(conn, now, "cancelled", account=row["account"], order_id=row["id"], reason=reason)


def view(row: Row) -> OrderView:
    return OrderView(
        id=row["id"],
        account=row["account"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=row["side"],
        type=row["type"],
        status=row["status"],
        amount=row["amount"],
        filled=row["filled"],
        avg_price=row["avg_price"],
        price=row["price"],
        stop_price=row["stop_price"],
        fee=row["fee"],
        reduce_only=bool(row["reduce_only"]),
        parent_id=row["parent_id"],
        exchange_order_id=row["exchange_order_id"],
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
