"""Drawdown of an account's equity within a period, marked to market.

Equity is rebuilt from the fills (cash plus coins held, at the latest mark: the candle close, or a
fill's own price at the moment it filled), so an open loss counts the moment the market shows it,
not only when a sell realises it. The cash-basis figure (starting balance plus net realised PnL
after each fill) is computed beside it and named as such.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from heablcoin_mcp.core.books.money import ZERO

# Candle sizes tried, smallest first, for marking a period with at most MAX_MARKS closes per symbol.
MARK_TIMEFRAMES = (("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("4h", 14_400), ("1d", 86_400))
MAX_MARKS = 1000


@dataclass(frozen=True)
class Fill:
    ts: float
    symbol: str
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    realized_pnl: Decimal


def mark_timeframe(span_seconds: float) -> tuple[str, int]:
    """The smallest candle size that covers the span in at most MAX_MARKS candles."""
    return next(((tf, s) for tf, s in MARK_TIMEFRAMES if span_seconds / s <= MAX_MARKS), MARK_TIMEFRAMES[-1])


def drawdowns(fills: list[Fill], marks: dict[str, list[tuple[float, Decimal]]], initial_cash: Decimal,
              start: float) -> tuple[Decimal, Decimal]:
    """(mark-to-market, cash-basis) largest fall from the running peak within ``start`` onwards, as
    fractions. ``marks``: per symbol, (time the close was known, close)."""
    events: list[tuple[float, int, object]] = [(f.ts, 0, f) for f in fills]
    events += [(ts, 1, (symbol, close)) for symbol, rows in marks.items() for ts, close in rows]
    events.sort(key=lambda e: (e[0], e[1]))
    cash, cash_basis = initial_cash, initial_cash
    held: dict[str, Decimal] = defaultdict(lambda: ZERO)
    last: dict[str, Decimal] = {}
    worst = {"market": ZERO, "cash": ZERO}
    peaks: dict[str, Decimal] = {}
    def equity() -> Decimal:
        return cash + sum((q * last.get(s, ZERO) for s, q in held.items() if q), ZERO)

    for ts, _, item in events:
        if ts >= start and not peaks:  # the period's first peak is the equity it started with
            peaks.update(market=equity(), cash=cash_basis)
        if isinstance(item, Fill):
            sign = 1 if item.side == "buy" else -1
            cash -= sign * item.price * item.amount + item.fee
            held[item.symbol] += sign * item.amount
            last[item.symbol] = item.price
            cash_basis += item.realized_pnl - item.fee
        else:
            symbol, close = item  # type: ignore[misc]
            last[symbol] = close
        if ts < start:
            continue
        for name, value in (("market", equity()), ("cash", cash_basis)):
            peak = peaks[name] = max(peaks.get(name, value), value)
            if peak > 0:
                worst[name] = max(worst[name], (peak - value) / peak)
    return worst["market"], worst["cash"]
