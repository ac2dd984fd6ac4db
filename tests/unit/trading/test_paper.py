from __future__ import annotations

from decimal import Decimal as D

import pytest

from heablcoin_mcp.core.books.money import dec, floor_to_step, text
from heablcoin_mcp.core.trading.paper import Slice, average, stop_fill_price, stop_triggered, traded_through, walk_book
from heablcoin_mcp.errors import InvalidInput

pytestmark = pytest.mark.both_engines

ASKS = [(100.0, 1.0), (101.0, 2.0)]
BIDS = [(99.0, 1.0), (98.0, 2.0)]


def test_a_market_buy_walks_the_asks_for_a_base_amount() -> None:
    slices = walk_book(ASKS, "buy", amount=D(2), fallback_price=D(100), slippage_bps=D(10))
    assert slices == [Slice(D(100), D(1)), Slice(D(101), D(1))]
    assert average(slices) == (D(2), D("100.5"))


def test_a_quote_amount_spends_exactly_that_much() -> None:
    slices = walk_book(ASKS, "buy", quote=D(302), fallback_price=D(100), slippage_bps=D(0))
    assert sum(s.price * s.amount for s in slices) == D(302)
    assert slices == [Slice(D(100), D(1)), Slice(D(101), D(2))]


def test_what_the_book_cannot_absorb_fills_with_slippage_past_the_last_level() -> None:
    slices = walk_book(BIDS, "sell", amount=D(5), fallback_price=D(99), slippage_bps=D(50))
    assert slices[-1] == Slice(D(98) * (1 - D(50) / D(10_000)), D(2))
    assert sum(s.amount for s in slices) == D(5)


def test_no_book_means_last_price_with_slippage() -> None:
    assert walk_book([], "buy", amount=D(1), fallback_price=D(200), slippage_bps=D(5)) == [Slice(D("200.1"), D(1))]


def test_a_limit_never_fills_beyond_its_price() -> None:
    slices = walk_book(ASKS, "buy", amount=D(3), limit=D("100.5"), fallback_price=D(100), slippage_bps=D(10))
    assert slices == [Slice(D(100), D(1))]


@pytest.mark.parametrize(("side", "high", "low", "stop", "hit"), [
    ("sell", 100, 95, 95, True), ("sell", 100, 95.01, 95, False), ("buy", 105, 100, 105, True),
    ("buy", 104.99, 100, 105, False)])
def test_stops_trigger_on_reaching_the_price(side: str, high: float, low: float, stop: float, hit: bool) -> None:
    assert stop_triggered(side, dec(stop), dec(high), dec(low)) is hit


@pytest.mark.parametrize(("side", "high", "low", "limit", "tick", "hit"), [
    # a touch is not a fill: the market must trade a tick beyond the limit
    ("buy", 101, 99, 99, "0.01", False), ("buy", 101, "98.99", 99, "0.01", True),
    ("sell", 101, 99, 101, "0.01", False), ("sell", "101.01", 99, 101, "0.01", True),
    ("buy", 101, 99, 99, None, False), ("buy", 101, "98.999", 99, None, True),
    ("buy", 101, "99.5", 99, "0.01", False), ("sell", "100.9", 99, 101, "0.01", False)])
def test_limits_fill_only_when_traded_through_by_a_tick(side: str, high: object, low: object, limit: float,
                                                         tick: str | None, hit: bool) -> None:
    assert traded_through(side, dec(limit), dec(high), dec(low), D(tick) if tick else None) is hit


@pytest.mark.parametrize(("side", "stop", "opened", "expected"), [
    ("sell", 95, 96, D(95) * D("0.9975")),      # reached within the candle: at the stop, slipped
    ("sell", 95, 90, D(90) * D("0.9975")),      # gapped down through it: at the open, slipped
    ("buy", 105, 104, D(105) * D("1.0025")),
    ("buy", 105, 110, D(110) * D("1.0025")),    # gapped up through it
])
def test_a_stop_fills_at_the_stop_or_the_gap_never_better(side: str, stop: int, opened: int, expected: D) -> None:
    assert stop_fill_price(side, D(stop), D(opened), D(25)) == expected


def test_money_is_exact_and_rejects_nonsense() -> None:
    assert dec(0.1) + dec(0.2) == D("0.3")
    assert floor_to_step(D("0.123456"), D("0.001")) == D("0.123")
    assert text(D("1.2300")) == "1.23" and text(D("1E+3")) == "1000"
    for bad in ("nan", "inf", float("nan"), float("-inf"), "ten", None, True):
        with pytest.raises(InvalidInput):
            dec(bad)
