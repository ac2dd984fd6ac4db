"""Order-book message handling (ratios against a reference measured in the same run).

Binance ``depthUpdate`` messages (ten level changes each, a fifth of them removals) go through what
the product runs for each one: ccxt.pro's Binance handler (sequence check, apply to its sorted book
sides) and our check of the result (``orderbook.check_book``). The reference applies the same
deltas to two plain dicts, price → amount: the floor for any book, with no order and no checks.
Measured at several book depths, so growth with depth is visible. Figures are per 1,000 messages.
"""

from __future__ import annotations

import random
import time
from typing import Any

from heablcoin_mcp.core.market.ccxt_source import rebase_urls
from heablcoin_mcp.core.market.orderbook import BookView, check_book
from tests.fakes.exchange import FakeBinance

MESSAGES = 20_000
CHANGES = 10
SYMBOL, MARKET = "XRP/USDT", "XRPUSDT"
TICK = 0.0001


def _messages(levels: int, seed: int = 7) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A snapshot of ``levels`` per side around 1.0 and the updates after it, prices on the tick grid,
    bids always below asks so the book stays valid."""
    draw = random.Random(seed)
    bids = [(round(1.0 - TICK * (i + 1), 4), float(draw.randint(1, 500))) for i in range(levels)]
    asks = [(round(1.0 + TICK * i, 4), float(draw.randint(1, 500))) for i in range(levels)]
    snapshot = {"lastUpdateId": 1000, "bids": [[f"{p}", f"{a}"] for p, a in bids],
                "asks": [[f"{p}", f"{a}"] for p, a in asks]}
    updates = []
    for n in range(MESSAGES):
        changes: dict[str, list[list[str]]] = {"b": [], "a": []}
        for _ in range(CHANGES):
            side = draw.choice("ba")
            offset = draw.randint(1, levels)
            price = round(1.0 - TICK * offset, 4) if side == "b" else round(1.0 + TICK * (offset - 1), 4)
            amount = 0.0 if draw.random() < 0.2 and offset > 1 else float(draw.randint(1, 500))
            changes[side].append([f"{price}", f"{amount}"])
        updates.append({"e": "depthUpdate", "E": 1_700_000_000_000 + n, "s": MARKET, "U": 1001 + n, "u": 1001 + n,
                        **changes})
    return snapshot, updates


def _plain_dicts(snapshot: dict[str, Any], updates: list[dict[str, Any]]) -> float:
    bids = {float(p): float(a) for p, a in snapshot["bids"]}
    asks = {float(p): float(a) for p, a in snapshot["asks"]}
    started = time.perf_counter()
    for message in updates:
        for side, levels in ((bids, message["b"]), (asks, message["a"])):
            for price, amount in levels:
                value = float(amount)
                if value:
                    side[float(price)] = value
                else:
                    side.pop(float(price), None)
    return time.perf_counter() - started


async def _through_ccxt(exchange: Any, snapshot: dict[str, Any], updates: list[dict[str, Any]]) -> float:
    client = exchange.client("wss://stream.binance.com:9443/ws")  # a spot URL; never connected here
    book = exchange.order_book(exchange.parse_order_book(snapshot, SYMBOL), 5000)
    book["nonce"] = snapshot["lastUpdateId"]
    book["timestamp"] = 1_700_000_000_000  # past the first update: each must follow the last
    exchange.orderbooks[SYMBOL] = book
    previous = book["nonce"]
    started = time.perf_counter()
    for message in updates:
        exchange.handle_order_book(client, message)
        check_book(BookView(symbol=SYMBOL, bids=book["bids"], asks=book["asks"], nonce=book["nonce"],
                            timestamp=book["timestamp"], previous_nonce=previous))
        previous = book["nonce"]
    elapsed = time.perf_counter() - started
    assert book["nonce"] == updates[-1]["u"], "an update was dropped: the run measured less than it says"
    return elapsed


async def rows() -> list[tuple[str, float, str, float]]:
    import ccxt.pro

    rest = FakeBinance().start()
    exchange = ccxt.pro.binance({"enableRateLimit": False})
    exchange.urls["api"] = rebase_urls(exchange.urls["api"], rest.url)
    try:
        await exchange.load_markets()
        rows = []
        for levels in (100, 1000, 5000):
            snapshot, updates = _messages(levels)
            ours = await _through_ccxt(exchange, snapshot, updates)
            plain = _plain_dicts(snapshot, updates)
            per = 1000 / MESSAGES
            rows.append((f"order book: 1k depthUpdates, {levels} levels", ours * per, "plain dict apply",
                         plain * per))
        return rows
    finally:
        await exchange.close()
        rest.stop()
