"""Paper fills: how an order would have executed against the market, without sending anything.

- Market orders walk the order book level by level (average price), paying the taker fee; what
  the visible book cannot absorb fills at the last level moved by ``slippage_bps``. With no book,
  the last price moved by the slippage.
- Limit orders fill at their price when the market trades through it by at least one price tick
  (maker fee): a touch is not a fill, since the queue ahead at that price may take all of it. A
  limit that is marketable when placed fills at once against the book, up to its price, as a taker.
- Stop orders trigger when a candle reaches the stop and fill at the stop, or at the candle's open
  when it gapped past the stop, moved by the slippage against the order (taker fee); a stop-limit
  then rests as a limit from the next candle on. A stop already on the wrong side of the market is
  refused at preview.
- Only candles that opened after the order was placed can fill it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from heablcoin_mcp.core.books.money import ZERO

BPS = Decimal(10_000)


@dataclass(frozen=True)
class Slice:
    price: Decimal
    amount: Decimal


def walk_book(levels: list[tuple[float, float]], side: str, *, amount: Decimal | None = None,
              quote: Decimal | None = None, limit: Decimal | None = None, fallback_price: Decimal,
              slippage_bps: Decimal) -> list[Slice]:
    """Slices that fill ``amount`` (base) or spend ``quote`` against ``levels`` (asks for a buy, bids
    for a sell), never beyond ``limit`` when given (a limit's remainder is left unfilled)."""
    slices: list[Slice] = []
    remaining_base, remaining_quote = amount, quote
    last_price = fallback_price
    for raw_price, raw_amount in levels:
        price, available = Decimal(str(raw_price)), Decimal(str(raw_amount))
        if limit is not None and (price > limit if side == "buy" else price < limit):
            return slices
        last_price = price
        take = available if remaining_base is None else min(available, remaining_base)
        if remaining_quote is not None:
            take = min(take, remaining_quote / price)
        if take > 0:
            slices.append(Slice(price, take))
        if remaining_base is not None:
            remaining_base -= take
            if remaining_base <= 0:
                return slices
        if remaining_quote is not None:
            remaining_quote -= take * price
            if remaining_quote <= 0:
                return slices
    if limit is not None:
        return slices
    slipped = last_price * (1 + slippage_bps / BPS) if side == "buy" else last_price * (1 - slippage_bps / BPS)
    if remaining_base is not None and remaining_base > 0:
        slices.append(Slice(slipped, remaining_base))
    elif remaining_quote is not None and remaining_quote > 0:
        slices.append(Slice(slipped, remaining_quote / slipped))
    return slices


def average(slices: list[Slice]) -> tuple[Decimal, Decimal]:
    """(total base amount, average price)."""
    total = sum((s.amount for s in slices), ZERO)
    if total == 0:
        return ZERO, ZERO
    return total, sum((s.price * s.amount for s in slices), ZERO) / total


def stop_triggered(side: str, stop: Decimal, high: Decimal, low: Decimal) -> bool:
    """A buy stop triggers when price rises to it; a sell stop when price falls to it."""
    return high >= stop if side == "buy" else low <= stop


def traded_through(side: str, limit: Decimal, high: Decimal, low: Decimal, tick: Decimal | None) -> bool:
    """A buy limit fills when price trades at least one tick below it; a sell limit, one tick above
    (strictly beyond it when the tick is unknown)."""
    if tick:
        return low <= limit - tick if side == "buy" else high >= limit + tick
    return low < limit if side == "buy" else high > limit


def stop_fill_price(side: str, stop: Decimal, candle_open: Decimal, slippage_bps: Decimal) -> Decimal:
    """Where a triggered stop fills: at the stop, or at the open when the candle gapped past it, then
    slipped against the order. Never better than the market it met."""
    slip = slippage_bps / BPS
    if side == "buy":
        return max(stop, candle_open) * (1 + slip)
    return min(stop, candle_open) * (1 - slip)
