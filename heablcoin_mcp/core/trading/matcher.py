"""The paper matcher: resting paper orders checked against the market, open live orders refreshed."""

from __future__ import annotations

import logging
from decimal import Decimal

import anyio

from heablcoin_mcp.core.books import journal
from heablcoin_mcp.core.books.money import step_of
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.models import Trade
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.market.streams import MarketStreams
from heablcoin_mcp.core.storage import Row, Storage
from heablcoin_mcp.core.trading import paper
from heablcoin_mcp.core.trading.accounts import AccountService
from heablcoin_mcp.core.trading.execution import Executor
from heablcoin_mcp.core.trading.live import LiveBrokers
from heablcoin_mcp.core.trading.pricing import fee_of
from heablcoin_mcp.core.trading.records import OPEN_STATUSES
from heablcoin_mcp.errors import HeablError

log = logging.getLogger(__name__)
Bar = tuple[int, Decimal, Decimal, Decimal]  # opened at (ms), open, high, low
Found = tuple[Decimal, float, str]  # fill price, when the market traded (s), maker / taker
# An order is `new` only between its journaled intent and the fill or the exchange's answer; one
# older than this was left by a process that died (exchange calls time out well before it).
STALE_NEW_SECONDS = 120.0
OPEN_PAPER = (f"FROM orders o JOIN accounts a ON a.name = o.account WHERE a.mode = 'paper' "
              f"AND o.status IN {OPEN_STATUSES}")  # the resting paper orders


class Matcher:
    def __init__(
        self,
        db: Storage,
        clock: Clock,
        market: MarketService,
        brokers: LiveBrokers,
        accounts: AccountService,
        executor: Executor,
        *,
        slippage_bps: Decimal,
    ) -> None:
        self.db, self.clock, self.market, self.brokers, self.accounts = db, clock, market, brokers, accounts
        self.executor, self.slippage_bps, self.records = executor, slippage_bps, executor.records

    async def run(self, interval: float) -> None:
        """Match forever, every ``interval`` seconds; one bad tick never stops the loop."""
        while True:
            try:
                await self.match_open_orders()
            except Exception:  # the matcher must outlive any one bad tick
                log.exception("paper matcher tick failed")
            await anyio.sleep(interval)

    async def follow_trades(self, streams: MarketStreams, refresh: float) -> None:
        """Fill resting paper orders from the trade stream of every symbol that has one."""
        async def symbols() -> set[str]:
            return {row[0] for row in self.db.conn.execute(f"SELECT DISTINCT o.symbol {OPEN_PAPER}")}

        async def handle(symbol: str, trades: list[Trade]) -> None:
            await self.fill_from_trades(symbol, trades)

        await streams.follow("trades", symbols, handle, refresh)

    async def match_open_orders(self) -> int:
        """Check every open paper order against the market since it was last checked, and refresh
        open live orders from their exchange.

        After a restart this catches up from one-minute candles: a limit fills if a candle traded
        through its price, a stop triggers if a candle reached it. Returns the number of paper fills."""
        self.recover_interrupted()
        rows = self.db.conn.execute(
            f"SELECT o.*, a.mode FROM orders o JOIN accounts a ON a.name = o.account WHERE o.status IN "
            f"{OPEN_STATUSES} ORDER BY o.created_at"
        ).fetchall()
        fills = 0
        for row in rows:
            try:
                if row["mode"] == "live":
                    await self._sync_live(row)
                else:
                    fills += await self._match(row)
            except HeablError as exc:
                log.warning("order matcher: %s on %s: %s", row["id"], row["symbol"], exc.message)
        return fills

    def recover_interrupted(self) -> int:
        """Settle orders a dead process left `new` (intent journaled, nothing acted on): a paper one
        is marked failed — filling it now would execute at a price the user never saw — and a live
        one `outcome_unknown`, since it may have reached the exchange. Journaled either way."""
        cutoff = self.clock.now() - STALE_NEW_SECONDS
        rows = self.db.conn.execute("SELECT o.id, o.client_order_id, a.mode FROM orders o JOIN accounts a ON "
                                    "a.name = o.account WHERE o.status = 'new' AND o.created_at < ?",
                                    (cutoff,)).fetchall()
        for row in rows:
            if row["mode"] == "live":
                self.records.set_status(row["id"], "outcome_unknown", "the server stopped while sending it: check "
                                        f"the exchange for client order id {row['client_order_id']}")
            else:
                self.records.set_status(row["id"], "failed", "the server stopped before it was executed; "
                                        "nothing was filled — place it again if you still want it")
        return len(rows)

    async def _sync_live(self, row: Row) -> None:
        """A live order's truth is on the exchange: fetch it and record what changed."""
        if not row["exchange_order_id"]:
            return
        broker = self.brokers.get(self.accounts.get(row["account"]))
        self.executor.book_live(row["id"], await broker.fetch(row["exchange_order_id"], row["symbol"]))

    async def _match(self, row: Row) -> int:
        now_ms = int(self.clock.now() * 1000)
        placed_ms = int(row["created_at"] * 1000)
        since = max(int(row["checked_until"] or now_ms), placed_ms)
        start = since - since % 60_000
        minutes = max(1, (now_ms - start) // 60_000 + 1)
        timeframe, count = ("1m", minutes) if minutes <= 1000 else ("1h", minutes // 60 + 1)
        candles = await self.market.candles(row["symbol"], timeframe, min(count, 5000), start)
        bars = [(int(c[0]), *(Decimal(str(v)) for v in c[1:4])) for c in candles
                if c[0] >= placed_ms]  # prices from before the order existed fill nothing
        found = await self._walk(row, bars)
        with self.db.write() as conn:
            conn.execute(
                f"UPDATE orders SET checked_until = ? WHERE id = ? AND status IN {OPEN_STATUSES}", (now_ms, row["id"])
            )
        return await self._book(row, found)

    async def fill_from_trades(self, symbol: str, trades: list[Trade]) -> int:
        """Check the open paper orders of a symbol against streamed trades: each trade is a bar whose
        open, high and low are its price, and only trades printed after an order was placed count."""
        rows = self.db.conn.execute(f"SELECT o.* {OPEN_PAPER} AND o.symbol = ? ORDER BY o.created_at",
                                    (symbol,)).fetchall()
        fills = 0
        for row in rows:
            placed_ms = row["created_at"] * 1000
            bars = [(t.timestamp, price, price, price) for t in trades if t.timestamp > placed_ms
                    for price in (Decimal(str(t.price)),)]
            if bars:
                fills += await self._book(row, await self._walk(row, bars))
        return fills

    async def _walk(self, row: Row, bars: list[Bar]) -> Found | None:
        """The first bar that fills the order, in time order; a stop reached on the way is marked
        triggered (a stop-limit then rests as a limit from the next bar: this one's path is unknown)."""
        tick = step_of((await self.market.market(row["symbol"])).price_tick)
        side, kind = row["side"], row["type"]
        limit = Decimal(row["price"]) if row["price"] else None
        stop = Decimal(row["stop_price"]) if row["stop_price"] else None
        triggered = bool(row["triggered"])
        for at_ms, opened, high, low in bars:
            if kind in ("stop", "stop_limit") and not triggered:
                assert stop is not None
                if not paper.stop_triggered(side, stop, high, low):
                    continue
                triggered = True
                self._mark_triggered(row)
                if kind == "stop":
                    return paper.stop_fill_price(side, stop, opened, self.slippage_bps), at_ms / 1000, "taker"
                continue
            if limit is not None and paper.traded_through(side, limit, high, low, tick):
                return limit, at_ms / 1000, "maker"
        return None

    async def _book(self, row: Row, found: Found | None) -> int:
        if found is None:
            return 0
        price, at, liquidity = found
        market = await self.market.market(row["symbol"])
        self.executor.fill(row["id"], [paper.Slice(price, Decimal(row["amount"]))], liquidity,
                           fee_of(getattr(market, f"{liquidity}_fee")), at=at)
        return 1

    def _mark_triggered(self, row: Row) -> None:
        now = self.clock.now()
        with self.db.write() as conn:
            conn.execute("UPDATE orders SET triggered = 1, updated_at = ? WHERE id = ?", (now, row["id"]))
            journal.append(
                conn, now, "triggered", account=row["account"], order_id=row["id"], stop_price=row["stop_price"]
            )
