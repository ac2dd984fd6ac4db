"""The local order book of a streamed symbol, and the checks every update passes.

The book is kept by the stream source from a snapshot plus incremental updates: ccxt.pro applies
each exchange's own sequence rules (Binance: drop updates up to the snapshot's lastUpdateId, then
each update's first id must follow the previous one's last) and raises on a gap or a checksum
mismatch. What this module adds is the check of the result before anyone reads it: the sequence
number never goes back, levels are sorted best first with positive amounts, and the book is not
crossed. A failed check is a gap too: the stream resyncs from a new snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from heablcoin_mcp.core.market.models import OrderBook

Level = Sequence[float]  # [price, amount, ...]: ccxt's rows, or (price, amount) tuples


class BookGap(Exception):
    """A sequence gap or a book that fails its check: resync from a new snapshot."""


@dataclass
class BookView:
    symbol: str
    bids: Sequence[Level]  # best first; may be the source's live lists, copied only when served
    asks: Sequence[Level]
    nonce: int | None
    timestamp: int | None
    previous_nonce: int | None = None  # the nonce of the update served before this one

    def top(self, depth: int) -> OrderBook:
        return OrderBook(symbol=self.symbol, timestamp=self.timestamp or 0,
                         bids=[(float(level[0]), float(level[1])) for level in self.bids[:depth]],
                         asks=[(float(level[0]), float(level[1])) for level in self.asks[:depth]])


CHECKED_LEVELS = 10  # order and amounts are checked at the top, where every reader looks first


def check_book(view: BookView) -> None:
    """Raises BookGap when the update cannot be a correct book."""
    if view.nonce is not None and view.previous_nonce is not None and view.nonce < view.previous_nonce:
        raise BookGap(f"sequence went back from {view.previous_nonce} to {view.nonce}")
    if view.bids and view.asks and view.bids[0][0] >= view.asks[0][0]:
        raise BookGap(f"crossed book: best bid {view.bids[0][0]} >= best ask {view.asks[0][0]}")
    for side, levels, best_first_is_highest in (("bid", view.bids, True), ("ask", view.asks, False)):
        top = levels[:CHECKED_LEVELS]
        prices = [level[0] for level in top]
        if prices != sorted(prices, reverse=best_first_is_highest):
            raise BookGap(f"{side} levels out of order near {prices[0]}")
        if top and min(level[1] for level in top) <= 0:
            raise BookGap(f"a {side} level with no amount")
