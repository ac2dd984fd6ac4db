"""The checks every streamed book passes before anyone reads it."""

from __future__ import annotations

import pytest

from heablcoin_mcp.core.market.orderbook import BookGap, BookView, check_book

BIDS = [(0.50, 10.0), (0.49, 5.0), (0.48, 2.0)]
ASKS = [(0.51, 7.0), (0.52, 3.0)]


def view(bids=BIDS, asks=ASKS, nonce=11, previous=10) -> BookView:  # type: ignore[no-untyped-def]
    return BookView(symbol="XRP/USDT", bids=bids, asks=asks, nonce=nonce, timestamp=1, previous_nonce=previous)


def test_a_sound_book_passes_and_serves_its_top_levels() -> None:
    check_book(view())
    check_book(view(bids=[], asks=ASKS))  # one side empty is a thin market, not a broken one
    top = view().top(2)
    assert top.bids == [(0.50, 10.0), (0.49, 5.0)] and top.asks == ASKS


@pytest.mark.parametrize(("book", "said"), [
    (view(nonce=9, previous=10), "sequence went back"),
    (view(bids=[(0.51, 1.0), *BIDS]), "crossed book"),
    (view(bids=[(0.49, 5.0), (0.50, 10.0)]), "bid levels out of order"),
    (view(asks=[(0.52, 3.0), (0.51, 7.0)]), "ask levels out of order"),
    (view(asks=[(0.51, 0.0), (0.52, 3.0)]), "ask level with no amount"),
])
def test_a_book_that_cannot_be_right_is_a_gap(book: BookView, said: str) -> None:
    with pytest.raises(BookGap, match=said):
        check_book(book)
