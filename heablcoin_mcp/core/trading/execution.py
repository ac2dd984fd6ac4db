"""Execution: what happens after the user confirmed and the risk engine passed the order again.

The intent is journaled first (status ``new``), then a paper order fills against the book (market)
or rests with its funds locked (limit / stop), or a live order is sent through the account's
exchange and booked from what the exchange reports.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal

from heablcoin_mcp.core.books import journal, ledger
from heablcoin_mcp.core.books.models import OrderOutcome
from heablcoin_mcp.core.books.money import ZERO, text
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.core.storage import IntegrityError, Storage
from heablcoin_mcp.core.trading import brackets, paper
from heablcoin_mcp.core.trading.live import LiveBrokers, LiveOrder, total_fee
from heablcoin_mcp.core.trading.pricing import BOOK_DEPTH, Priced, fee_of
from heablcoin_mcp.core.trading.records import OPEN_STATUSES, OrderRecords, move_lock, open_partner, spend_token
from heablcoin_mcp.errors import HeablError, OutcomeUnknown, RiskRejected


class Executor:
    def __init__(
        self,
        db: Storage,
        clock: Clock,
        market: MarketService,
        brokers: LiveBrokers,
        records: OrderRecords,
        *,
        slippage_bps: Decimal,
        metrics: Metrics | None = None,
    ) -> None:
        self.db, self.clock, self.market, self.brokers, self.records = db, clock, market, brokers, records
        self.slippage_bps = slippage_bps
        self.metrics = metrics or Metrics()

    async def execute(self, priced: Priced, token: str) -> OrderOutcome:
        """Spend the confirmation token and journal the intent in one transaction, then fill on paper
        (market now, limit/stop resting) or send live."""
        try:
            outcome = await self._execute(priced, token)
        except HeablError as exc:
            self.metrics.count("heablcoin_orders", priced.account.mode, exc.code)
            raise
        self.metrics.count("heablcoin_orders", priced.account.mode,
                           outcome.order.status if outcome.status == "executed" and outcome.order else outcome.status)
        return outcome

    async def _execute(self, priced: Priced, token: str) -> OrderOutcome:
        req, market = priced.req, priced.market
        order_id = f"ord_{secrets.token_hex(8)}"
        now = self.clock.now()
        try:
            with self.db.write() as conn:
                spend_token(conn, token, now)
                conn.execute(
                    "INSERT INTO orders (id, account, client_order_id, symbol, side, type, amount, quote_amount, price,"
                    " stop_price, reduce_only, status, stop_loss, take_profit, checked_until, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?, ?)",
                    (
                        order_id,
                        req.account,
                        req.client_order_id,
                        market.symbol,
                        req.side,
                        req.type,
                        text(priced.base_amount),
                        text(req.amount) if req.amount_unit == "quote" else None,
                        optional_text(req.price),
                        optional_text(req.stop_price),
                        int(req.reduce_only),
                        optional_text(req.stop_loss),
                        optional_text(req.take_profit),
                        int(now * 1000),
                        now,
                        now,
                    ),
                )
                journal.append(
                    conn,
                    now,
                    "intent",
                    account=req.account,
                    order_id=order_id,
                    request=json.loads(req.model_dump_json()),
                    expected_price=text(priced.expected),
                )
        except IntegrityError:
            existing = self.records.existing(req)
            assert existing is not None
            return OrderOutcome(status="existing", order=existing, message="this order was already placed")
        if priced.account.mode == "live":
            return await self._execute_live(order_id, priced)
        try:
            await self._execute_paper(order_id, priced)
        except HeablError as exc:
            if self.records.order(order_id).status == "new":  # nothing was filled: say so, never leave it `new`
                self.records.set_status(order_id, "failed", f"not executed: {exc.message}")
            raise
        order = self.records.order(order_id)
        attached = [self.records.order(c) for c in brackets.attach(self.db, self.clock, order)]
        return OrderOutcome(
            status="executed",
            order=order,
            attached=attached,
            message=f"{order.status}: {req.side} {order.filled}/{order.amount} {market.symbol}"
            f"{f' at {order.avg_price}' if order.avg_price else ''} on paper account "
            f"{req.account}",
        )

    async def _execute_paper(self, order_id: str, priced: Priced) -> None:
        req = priced.req
        if req.type != "market":
            await self._rest(order_id, priced)
            return
        book = await self.market.order_book(priced.market.symbol, BOOK_DEPTH)
        # Beyond the book the walk slips from the last price: the preview's expected price already
        # carries that slippage, and slipping it again would charge it twice.
        last = Decimal(str((await self.market.ticker(priced.market.symbol)).last))
        slices = paper.walk_book(
            book.asks if req.side == "buy" else book.bids,
            req.side,
            amount=priced.base_amount,
            fallback_price=last,
            slippage_bps=self.slippage_bps,
        )
        self.fill(order_id, slices, "taker", priced.fee_rate)

    async def _execute_live(self, order_id: str, priced: Priced) -> OrderOutcome:
        req, account = priced.req, priced.account
        assert req.client_order_id is not None
        try:
            sent = await self.brokers.get(account).create(
                symbol=priced.market.symbol, side=req.side, kind=req.type, amount=priced.base_amount,
                price=req.price, stop_price=req.stop_price, client_order_id=req.client_order_id)
        except OutcomeUnknown as exc:
            self.records.set_status(order_id, "outcome_unknown", exc.message)
            raise
        except HeablError as exc:
            self.records.set_status(order_id, "rejected", exc.message)
            raise
        self.book_live(order_id, sent)
        order = self.records.order(order_id)
        return OrderOutcome(status="executed", order=order,
                            message=f"{order.status} on {account.exchange} (live account {account.name}): "
                                    f"{req.side} {order.filled}/{order.amount} {order.symbol}"
                                    f"{f' at {order.avg_price}' if order.avg_price else ''}")

    def book_live(self, order_id: str, live: LiveOrder) -> None:
        """Record what the exchange reports: the new part of the fill (as one fill at its average
        price), the status and the exchange's order id. Balances stay on the exchange."""
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            before, fee_before = Decimal(row["filled"]), Decimal(row["fee"])
            avg_before = Decimal(row["avg_price"]) if row["avg_price"] else ZERO
            fee = total_fee(live)
            if live.filled > before:
                average = live.average or (live.fills[-1].price if live.fills else avg_before)
                delta = live.filled - before
                price = (average * live.filled - avg_before * before) / delta
                base, quote = row["symbol"].split("/")
                ledger.apply_fill(conn, ledger.FillSpec(order_id, row["account"], row["symbol"], base, quote,
                                                        row["side"], price, delta, max(fee - fee_before, ZERO),
                                                        "taker", ZERO, now), book_balances=False)
            conn.execute(
                "UPDATE orders SET status = ?, filled = ?, avg_price = ?, fee = ?, exchange_order_id = ?, "
                "updated_at = ? WHERE id = ?",
                (live.status, text(live.filled), text(live.average) if live.average else row["avg_price"],
                 text(max(fee, fee_before)), live.exchange_order_id or row["exchange_order_id"], now, order_id))
            if live.status != row["status"] or live.filled != before:
                journal.append(conn, now, "sent" if row["status"] == "new" else "exchange_update",
                               account=row["account"], order_id=order_id, status=live.status,
                               filled=text(live.filled), exchange_order_id=live.exchange_order_id)

    async def _rest(self, order_id: str, priced: Priced) -> None:
        """Place a limit or stop order on the paper book: fill the marketable part, lock funds for the rest."""
        req, market = priced.req, priced.market
        if req.type == "limit":
            book = await self.market.order_book(market.symbol, BOOK_DEPTH)
            slices = paper.walk_book(
                book.asks if req.side == "buy" else book.bids,
                req.side,
                amount=priced.base_amount,
                limit=req.price,
                fallback_price=priced.expected,
                slippage_bps=self.slippage_bps,
            )
            if slices:
                self.fill(order_id, slices, "taker", fee_of(market.taker_fee), final=False)
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            remaining = Decimal(row["amount"]) - Decimal(row["filled"])
            if remaining <= 0:
                return
            if req.side == "buy":
                reserve_price = (
                    req.price if req.type != "stop" else req.stop_price * (1 + self.slippage_bps / paper.BPS)
                )
                asset, amount = market.quote, remaining * reserve_price * (1 + priced.fee_rate)  # type: ignore[operator]
            else:
                asset, amount = market.base, remaining
            ledger.lock(conn, req.account, asset, amount)
            status = "partially_filled" if Decimal(row["filled"]) > 0 else "open"
            conn.execute(
                "UPDATE orders SET status = ?, locked_asset = ?, locked_amount = ?, updated_at = ? WHERE id = ?",
                (status, asset, text(amount), now, order_id),
            )
            journal.append(
                conn,
                now,
                "accepted",
                account=req.account,
                order_id=order_id,
                status=status,
                locked=f"{text(amount)} {asset}",
            )

    def fill(
        self, order_id: str, slices: list[paper.Slice], liquidity: str, fee_rate: Decimal, *, final: bool = True,
        at: float | None = None,
    ) -> None:
        """Book fills for an order in one transaction, re-reading it first so nothing fills twice.
        ``at``: when the market traded (a resting order caught up from candles); default now."""
        now = self.clock.now()
        traded = now if at is None else min(at, now)
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            if row["status"] not in ("new", *OPEN_STATUSES):
                return
            partner = open_partner(conn, row)
            if partner is not None and Decimal(partner["locked_amount"]) > 0:  # this leg fills: it takes the lock
                move_lock(conn, partner, order_id)
                row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            market_base, market_quote = row["symbol"].split("/")
            remaining = Decimal(row["amount"]) - Decimal(row["filled"])
            locked = Decimal(row["locked_amount"])
            filled, fees = Decimal(row["filled"]), Decimal(row["fee"])
            cost = (Decimal(row["avg_price"]) if row["avg_price"] else ZERO) * filled
            for piece in slices:
                amount = min(piece.amount, remaining)
                if amount <= 0:
                    break
                fee = piece.price * amount * fee_rate
                use = min(locked, piece.price * amount + fee if row["side"] == "buy" else amount)
                try:
                    ledger.apply_fill(
                        conn,
                        ledger.FillSpec(
                            order_id,
                            row["account"],
                            row["symbol"],
                            market_base,
                            market_quote,
                            row["side"],
                            piece.price,
                            amount,
                            fee,
                            liquidity,
                            use,
                            traded,
                        ),
                    )
                except RiskRejected as exc:
                    conn.execute(
                        "UPDATE orders SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?",
                        (exc.message, now, order_id),
                    )
                    journal.append(conn, now, "rejected", account=row["account"], order_id=order_id, reason=exc.message)
                    return
                locked -= use
                remaining -= amount
                filled += amount
                cost += piece.price * amount
                fees += fee
            done = remaining <= 0 or (final and row["type"] == "market")
            if done and locked > 0:
                ledger.unlock(conn, row["account"], row["locked_asset"], locked)
                locked = ZERO
            status = "filled" if remaining <= 0 else ("partially_filled" if filled > 0 else row["status"])
            if done and remaining > 0:
                status = "partially_filled_cancelled" if filled > 0 else "cancelled"
            conn.execute(
                "UPDATE orders SET status = ?, filled = ?, avg_price = ?, fee = ?, fee_asset = ?, "
                "locked_amount = ?, updated_at = ? WHERE id = ?",
                (
                    status,
                    text(filled),
                    text(cost / filled) if filled else None,
                    text(fees),
                    market_quote,
                    text(locked),
                    now,
                    order_id,
                ),
            )
            journal.append(
                conn,
                now,
                "filled" if status == "filled" else "partial_fill",
                account=row["account"],
                order_id=order_id,
                filled=text(filled),
                avg_price=text(cost / filled) if filled else None,
                fee=text(fees),
                liquidity=liquidity,
            )
            if status == "filled" and row["oco_group"]:
                brackets.cancel_siblings(conn, row["oco_group"], order_id, now)


def optional_text(value: Decimal | None) -> str | None:
    return text(value) if value is not None else None
