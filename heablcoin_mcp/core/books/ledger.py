"""Balances, positions and fills in SQLite. Every function runs inside the caller's transaction.

Spot accounting: fees are charged in the quote currency; a position's average entry includes no
fees; realised PnL is (sell price - average entry) x amount, and fees are tracked beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from heablcoin_mcp.core.books.money import ZERO, text
from heablcoin_mcp.core.storage import Connection
from heablcoin_mcp.errors import RiskRejected


@dataclass(frozen=True)
class Holding:
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: Decimal
    avg_entry: Decimal
    realized_pnl: Decimal
    fees: Decimal


def holding(conn: Connection, account: str, asset: str) -> Holding:
    row = conn.execute("SELECT free, locked FROM balances WHERE account = ? AND asset = ?", (account, asset)).fetchone()
    return Holding(Decimal(row[0]), Decimal(row[1])) if row else Holding(ZERO, ZERO)


def holdings(conn: Connection, account: str) -> dict[str, Holding]:
    rows = conn.execute("SELECT asset, free, locked FROM balances WHERE account = ? ORDER BY asset", (account,))
    return {r[0]: Holding(Decimal(r[1]), Decimal(r[2])) for r in rows}


def _store(conn: Connection, account: str, asset: str, h: Holding) -> None:
    if h.free < 0 or h.locked < 0:
        raise RiskRejected(f"insufficient {asset} balance on {account}", details={"codes": ["INSUFFICIENT_BALANCE"]})
    conn.execute(
        "INSERT INTO balances (account, asset, free, locked) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account, asset) DO UPDATE SET free = excluded.free, locked = excluded.locked",
        (account, asset, text(h.free), text(h.locked)),
    )


def credit(conn: Connection, account: str, asset: str, amount: Decimal) -> None:
    h = holding(conn, account, asset)
    _store(conn, account, asset, Holding(h.free + amount, h.locked))


def lock(conn: Connection, account: str, asset: str, amount: Decimal) -> None:
    """Move free to locked (an open order reserves its funds). Raises RiskRejected when short."""
    h = holding(conn, account, asset)
    _store(conn, account, asset, Holding(h.free - amount, h.locked + amount))


def unlock(conn: Connection, account: str, asset: str, amount: Decimal) -> None:
    h = holding(conn, account, asset)
    _store(conn, account, asset, Holding(h.free + amount, h.locked - amount))


def position(conn: Connection, account: str, symbol: str) -> Position:
    row = conn.execute("SELECT quantity, avg_entry, realized_pnl, fees FROM positions WHERE account = ? AND symbol = ?",
                       (account, symbol)).fetchone()
    if row is None:
        return Position(symbol, ZERO, ZERO, ZERO, ZERO)
    return Position(symbol, *(Decimal(v) for v in row))


def positions(conn: Connection, account: str) -> list[Position]:
    rows = conn.execute("SELECT symbol, quantity, avg_entry, realized_pnl, fees FROM positions WHERE account = ? "
                        "ORDER BY symbol", (account,))
    return [Position(r[0], *(Decimal(v) for v in r[1:])) for r in rows]


@dataclass(frozen=True)
class FillSpec:
    order_id: str
    account: str
    symbol: str
    base: str
    quote: str
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    liquidity: str
    locked_used: Decimal  # funds of the order that were reserved (quote for buys, base for sells)
    ts: float


def apply_fill(conn: Connection, f: FillSpec, *, book_balances: bool = True) -> Decimal:
    """Book one fill: balances (paper only; a live exchange keeps its own), position, fill row.
    Returns the realised PnL (before fees).

    Raises RiskRejected when a paper account cannot pay for it."""
    cost = f.price * f.amount
    pos = position(conn, f.account, f.symbol)
    if book_balances:
        _book_balances(conn, f, cost)
    if f.side == "buy":
        quantity = pos.quantity + f.amount
        avg, realized = (pos.quantity * pos.avg_entry + cost) / quantity, ZERO
    else:
        quantity = pos.quantity - f.amount
        realized = (f.price - pos.avg_entry) * f.amount if pos.quantity > 0 else ZERO
        avg = pos.avg_entry if quantity > 0 else ZERO
    conn.execute(
        "INSERT INTO positions (account, symbol, quantity, avg_entry, realized_pnl, fees, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, symbol) DO UPDATE SET quantity = excluded.quantity, "
        "avg_entry = excluded.avg_entry, realized_pnl = excluded.realized_pnl, fees = excluded.fees, "
        "updated_at = excluded.updated_at",
        (f.account, f.symbol, text(max(quantity, ZERO)), text(avg), text(pos.realized_pnl + realized),
         text(pos.fees + f.fee), f.ts),
    )
    conn.execute(
        "INSERT INTO fills (order_id, account, symbol, side, price, amount, fee, fee_asset, liquidity, realized_pnl,"
        " ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (f.order_id, f.account, f.symbol, f.side, text(f.price), text(f.amount), text(f.fee), f.quote, f.liquidity,
         text(realized), f.ts),
    )
    return realized


def _book_balances(conn: Connection, f: FillSpec, cost: Decimal) -> None:
    """Move the money of a paper fill, using the order's reserved funds first."""
    if f.side == "buy":
        q = holding(conn, f.account, f.quote)
        spend = cost + f.fee
        from_locked = min(f.locked_used, spend, q.locked)
        _store(conn, f.account, f.quote, Holding(q.free - (spend - from_locked), q.locked - from_locked))
        credit(conn, f.account, f.base, f.amount)
    else:
        b = holding(conn, f.account, f.base)
        from_locked = min(f.locked_used, f.amount, b.locked)
        _store(conn, f.account, f.base, Holding(b.free - (f.amount - from_locked), b.locked - from_locked))
        credit(conn, f.account, f.quote, cost - f.fee)


def net_pnl_since(conn: Connection, since: float, account: str | None = None) -> Decimal:
    """Realised PnL minus fees of fills at or after ``since`` (all accounts when account is None)."""
    sql = "SELECT realized_pnl, fee FROM fills WHERE ts >= ?" + (" AND account = ?" if account else "")
    rows = conn.execute(sql, (since, account) if account else (since,))
    return sum((Decimal(r[0]) - Decimal(r[1]) for r in rows), ZERO)
