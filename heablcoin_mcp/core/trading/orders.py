"""OrderService: preview → risk checks → confirmation → journal intent → broker → journal result.

Nothing is sent without a confirmation: ``preview`` only prices and checks, and hands back a
single-use token bound to the exact order (valid ``CONFIRMATION_TTL`` seconds). ``confirm`` spends
the token, runs the risk checks again on fresh prices, commits the intent to the journal, and only
then lets the broker act.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
from decimal import Decimal
from typing import Any

from heablcoin_mcp.core.analysis.service import AnalysisService
from heablcoin_mcp.core.books import journal, ledger
from heablcoin_mcp.core.books.models import (
    BatchLeg,
    BatchOutcome,
    FillView,
    OrderOutcome,
    OrderPreview,
    OrderRequest,
    OrderView,
    RuleFailure,
)
from heablcoin_mcp.core.books.money import ZERO, dec, floor_to_step, step_of, text
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.models import MarketInfo
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.risk.engine import OrderContext, RiskEngine, TradingStateView, describe
from heablcoin_mcp.core.risk.limits import TradingState
from heablcoin_mcp.core.storage import Database
from heablcoin_mcp.core.trading import distribution, paper
from heablcoin_mcp.core.trading.accounts import Account, AccountService
from heablcoin_mcp.core.trading.live import LiveBrokers, LiveOrder, total_fee
from heablcoin_mcp.core.trading.portfolio import PortfolioService
from heablcoin_mcp.errors import ConfigError, HeablError, InvalidInput, NotFound, OutcomeUnknown, RiskRejected

log = logging.getLogger(__name__)

CONFIRMATION_TTL = 60.0
BATCH_PREFIX = "bat_"
SHARE_STEP = Decimal("1e-8")  # legs are then rounded down to each market's own amount step
DEFAULT_FEE = Decimal("0.001")
BOOK_DEPTH = 50
OPEN_STATUSES = ("open", "partially_filled")
REGIME_TIMEFRAME = "1h"


class _Priced:
    """A request priced against the market, with the context the risk rules need."""

    def __init__(
        self,
        req: OrderRequest,
        account: Account,
        market: MarketInfo,
        base_amount: Decimal,
        expected: Decimal,
        fee_rate: Decimal,
        failures: list[RuleFailure],
        warnings: list[str],
        regime: str,
        simulated: bool,
    ) -> None:
        self.req, self.account, self.market = req, account, market
        self.base_amount, self.expected, self.fee_rate = base_amount, expected, fee_rate
        self.failures, self.warnings, self.regime, self.simulated = failures, warnings, regime, simulated

    def preview(self, client_order_id: str) -> OrderPreview:
        req, notional = self.req, self.base_amount * self.expected
        fee = notional * self.fee_rate
        unit = self.market.base if req.amount_unit == "base" else self.market.quote
        summary = (
            f"{req.side.upper()} {text(self.base_amount)} {self.market.symbol} {req.type.replace('_', '-')}"
            f"{f' at {text(req.price)}' if req.price else ''}"
            f"{f' stop {text(req.stop_price)}' if req.stop_price else ''} ≈ {notional:.2f} {self.market.quote}"
            f" (fee ≈ {fee:.2f}) on {self.account.mode} account {self.account.name}"
            f"{f', stop-loss {text(req.stop_loss)}' if req.stop_loss else ''}"
            f"{f', take-profit {text(req.take_profit)}' if req.take_profit else ''}"
        )
        return OrderPreview(
            account=self.account.name,
            mode=self.account.mode,
            symbol=self.market.symbol,
            side=req.side,
            type=req.type,
            amount=text(self.base_amount),
            requested=f"{text(req.amount)} {unit}",
            price=text(req.price) if req.price else None,
            stop_price=text(req.stop_price) if req.stop_price else None,
            expected_price=f"{self.expected:.10g}",
            notional=f"{notional:.8f}".rstrip("0").rstrip("."),
            estimated_fee=f"{fee:.8f}".rstrip("0").rstrip("."),
            stop_loss=text(req.stop_loss) if req.stop_loss else None,
            take_profit=text(req.take_profit) if req.take_profit else None,
            reduce_only=req.reduce_only,
            client_order_id=client_order_id,
            regime=self.regime,
            simulated_prices=self.simulated,
            allowed=not self.failures,
            failures=self.failures,
            warnings=self.warnings,
            summary=summary,
        )


class OrderService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        market: MarketService,
        analysis: AnalysisService,
        risk: RiskEngine,
        portfolio: PortfolioService,
        accounts: AccountService,
        brokers: LiveBrokers,
        *,
        trading_mode: str,
        slippage_bps: Decimal,
    ) -> None:
        self.brokers = brokers
        self.db, self.clock, self.market, self.analysis = db, clock, market, analysis
        self.risk, self.portfolio, self.accounts = risk, portfolio, accounts
        self.trading_mode = trading_mode
        self.slippage_bps = slippage_bps

    # --- preview and confirmation --------------------------------------------------------------

    async def place(self, req: OrderRequest) -> OrderOutcome:
        """Price and check an order and issue its confirmation token. Sends nothing."""
        existing = self._existing(req)
        if existing is not None:
            return OrderOutcome(
                status="existing",
                order=existing,
                message=f"client_order_id {req.client_order_id} already placed order {existing.id}; "
                "no second order was created",
            )
        fingerprint = req.fingerprint()
        now = self.clock.now()
        row = self.db.conn.execute(
            "SELECT token, preview, expires_at FROM confirmations WHERE fingerprint = ? AND used_at IS NULL "
            "AND expires_at > ? ORDER BY created_at DESC LIMIT 1",
            (fingerprint, now),
        ).fetchone()
        if row is not None:  # the same order asked again while its token lives: the same preview and token
            preview = OrderPreview.model_validate_json(row["preview"])
            return self._pending(preview, row["token"], row["expires_at"])
        priced = await self._price(req)
        preview = priced.preview(req.client_order_id or f"hb-{secrets.token_hex(6)}")
        if not preview.allowed:
            with self.db.write() as conn:
                journal.append(
                    conn,
                    now,
                    "risk_rejected",
                    account=req.account,
                    symbol=preview.symbol,
                    codes=[f.code for f in preview.failures],
                    preview=preview.summary,
                )
            return OrderOutcome(
                status="rejected", preview=preview, message="refused by the risk engine: " + describe(preview.failures)
            )
        token = f"cfm_{secrets.token_urlsafe(18)}"
        stored = req.model_copy(update={"client_order_id": preview.client_order_id})
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO confirmations (token, fingerprint, request, preview, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token, fingerprint, stored.model_dump_json(), preview.model_dump_json(), now, now + CONFIRMATION_TTL),
            )
            journal.append(conn, now, "previewed", account=req.account, preview=preview.summary)
        return self._pending(preview, token, now + CONFIRMATION_TTL)

    @staticmethod
    def _pending(preview: OrderPreview, token: str, expires_at: float) -> OrderOutcome:
        return OrderOutcome(
            status="confirmation_required",
            preview=preview,
            confirmation_token=token,
            expires_at=expires_at,
            message=f"Not sent. Show the user: {preview.summary}. If they confirm, call "
            f"confirm_order with the token within {int(CONFIRMATION_TTL)} s.",
        )

    def _spend_token(self, token: str, outcome: str = "confirmed") -> sqlite3.Row:
        """Mark a token used (single use, atomically) and return its row.

        Raises:
            NotFound: unknown token. InvalidInput: already used, or expired (then journaled as expired).
        """
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM confirmations WHERE token = ?", (token,)).fetchone()
            if row is None:
                raise NotFound("unknown confirmation token", hint="Call place_order to get a fresh preview and token.")
            if row["used_at"] is not None:
                raise InvalidInput(
                    f"this confirmation token was already used ({row['outcome']})",
                    hint="A token confirms one order once; call place_order for another.",
                )
            expired = row["expires_at"] <= now
            conn.execute("UPDATE confirmations SET used_at = ?, outcome = ? WHERE token = ?",
                         (now, "expired" if expired else outcome, token))
            if expired:
                journal.append(conn, now, "expired", token=token[:8])
        if expired:
            raise InvalidInput(
                "the confirmation expired before it was used; nothing was sent",
                hint="Call place_order again for a fresh preview.",
            )
        return row

    async def confirm(self, token: str) -> OrderOutcome:
        """Execute a previewed order. Re-checks risk on fresh prices before anything is sent.

        Raises:
            NotFound / InvalidInput: unknown, used or expired token.
            RiskRejected: a rule fails now (prices or balances moved since the preview).
        """
        if token.startswith(BATCH_PREFIX):
            raise InvalidInput("this is a distribution token", hint="Use confirm_distribution for it.")
        req = OrderRequest.model_validate_json(self._spend_token(token)["request"])
        existing = self._existing(req)
        if existing is not None:
            return OrderOutcome(status="existing", order=existing, message="this order was already placed")
        priced = await self._price(req)
        if priced.failures:
            with self.db.write() as conn:
                journal.append(
                    conn,
                    self.clock.now(),
                    "risk_rejected",
                    account=req.account,
                    client_order_id=req.client_order_id,
                    codes=[f.code for f in priced.failures],
                )
            raise RiskRejected(
                "refused at execution by the risk engine: " + describe(priced.failures),
                hint="Nothing was sent. Review the failures; a new preview may pass.",
                details={"codes": [f.code for f in priced.failures]},
            )
        return await self._execute(priced)

    # --- distribution over accounts: one confirmation for the whole batch ------------------------

    async def distribute(self, values: dict[str, Any], strategy: str, accounts: list[Account]) -> BatchOutcome:
        """Split an order over accounts and preview every leg; issue one token for the batch."""
        amount = dec(values.get("amount"), "amount")
        budgets = await self._budgets(accounts, values) if strategy == "risk_based" else None
        shares = distribution.split(amount, strategy, {a.name: Decimal(str(a.weight)) for a in accounts}, budgets)
        legs: list[BatchLeg] = []
        for account in accounts:
            share = floor_to_step(shares.get(account.name, ZERO), SHARE_STEP)
            leg = BatchLeg(account=account.name, share=text(share))
            if share <= 0:
                leg.error = {"code": "invalid_input", "message": "no share for this account"}
            else:
                try:
                    leg.outcome = await self.place(OrderRequest.build(**{**values, "amount": share,
                                                                          "account": account.name}))
                except HeablError as exc:
                    leg.error = exc.to_dict()
            legs.append(leg)
        tokens = [leg.outcome.confirmation_token for leg in legs if leg.outcome and leg.outcome.confirmation_token]
        if not tokens:
            return BatchOutcome(status="rejected", strategy=strategy, legs=legs,
                                message="no leg can be placed; see each leg's error or preview")
        now = self.clock.now()
        fingerprint = "batch:" + hashlib.sha256(",".join(sorted(tokens)).encode()).hexdigest()
        row = self.db.conn.execute("SELECT token, expires_at FROM confirmations WHERE fingerprint = ? AND used_at "
                                   "IS NULL AND expires_at > ?", (fingerprint, now)).fetchone()
        if row is not None:
            token, expires = row["token"], row["expires_at"]
        else:
            token, expires = f"{BATCH_PREFIX}{secrets.token_urlsafe(18)}", min(
                leg.outcome.expires_at for leg in legs if leg.outcome and leg.outcome.expires_at)
            with self.db.write() as conn:
                conn.execute("INSERT INTO confirmations (token, fingerprint, request, preview, created_at, expires_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (token, fingerprint, json.dumps(tokens),
                                                           json.dumps([leg.model_dump(mode="json") for leg in legs]),
                                                           now, expires))
        return BatchOutcome(status="confirmation_required", strategy=strategy, legs=legs, confirmation_token=token,
                            expires_at=expires,
                            message=f"Not sent. Show the user the {len(tokens)} orders; if they confirm, call "
                                    "confirm_distribution with the token.")

    async def _budgets(self, accounts: list[Account], values: dict[str, Any]) -> dict[str, Decimal]:
        symbol = (await self.market.market(str(values["symbol"]))).symbol
        limits = self.risk.limits()
        budgets = {}
        for account in accounts:
            valuation = await self.portfolio.valuation(account.name)
            if values.get("side") == "sell":
                budgets[account.name] = valuation.held.get(symbol.split("/")[0], ledger.Holding(ZERO, ZERO)).free
            else:
                room = limits.max_position_fraction * valuation.equity - valuation.values.get(symbol, ZERO)
                price = valuation.marks.get(symbol) or await self.portfolio.mark(symbol)
                budgets[account.name] = room if values.get("amount_unit") == "quote" else room / price
        return budgets

    async def confirm_batch(self, token: str) -> BatchOutcome:
        """Execute every leg of a confirmed distribution; one leg failing does not stop the others."""
        row = self._spend_token(token)
        legs = [BatchLeg.model_validate(leg) for leg in json.loads(row["preview"])]
        for leg in legs:
            if leg.outcome is None or leg.outcome.confirmation_token is None:
                continue
            try:
                leg.outcome = await self.confirm(leg.outcome.confirmation_token)
            except HeablError as exc:
                leg.outcome, leg.error = None, exc.to_dict()
        done = sum(1 for leg in legs if leg.outcome and leg.outcome.status == "executed")
        return BatchOutcome(status="executed", strategy="confirmed", legs=legs,
                            message=f"{done} of {len(legs)} legs executed")

    def decline_batch(self, token: str, reason: str) -> BatchOutcome:
        row = self._spend_token(token, outcome="declined")
        for sub in json.loads(row["request"]):
            try:
                self.decline(sub, reason)
            except HeablError:
                continue
        return BatchOutcome(status="declined", strategy="declined", legs=[], message=f"Not sent: {reason}.")

    def decline(self, token: str, reason: str) -> OrderOutcome:
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT request, preview, used_at FROM confirmations WHERE token = ?", (token,)
            ).fetchone()
            if row is None or row["used_at"] is not None:
                raise InvalidInput("nothing to decline: unknown or used token")
            conn.execute("UPDATE confirmations SET used_at = ?, outcome = 'declined' WHERE token = ?", (now, token))
            request = OrderRequest.model_validate_json(row["request"])
            journal.append(
                conn, now, "declined", account=request.account, client_order_id=request.client_order_id, reason=reason
            )
        return OrderOutcome(
            status="declined", preview=OrderPreview.model_validate_json(row["preview"]), message=f"Not sent: {reason}."
        )

    # --- pricing -------------------------------------------------------------------------------

    async def _price(self, req: OrderRequest) -> _Priced:
        account = self.accounts.get(req.account)
        if account.mode == "live" and self.trading_mode != "live":
            raise ConfigError(
                f"account {account.name} is live but HEABLCOIN_TRADING_MODE is {self.trading_mode}",
                hint="Live orders need the user to set HEABLCOIN_TRADING_MODE=live; use a paper account meanwhile.",
            )
        market = await self.market.market(req.symbol)
        if market.type != "spot":
            raise InvalidInput(f"{market.symbol} is a {market.type} market; only spot trading is supported")
        if account.mode == "live" and (req.stop_loss is not None or req.take_profit is not None):
            raise InvalidInput("attached stop-loss / take-profit are paper-only for now",
                               hint="On a live account, place the protective stop as its own order.")
        ticker = await self.market.ticker(market.symbol)
        last = Decimal(str(ticker.last))
        warnings: list[str] = []
        taker = Decimal(str(market.taker_fee)) if market.taker_fee is not None else DEFAULT_FEE
        maker = Decimal(str(market.maker_fee)) if market.maker_fee is not None else DEFAULT_FEE
        if req.type == "market":
            book = await self.market.order_book(market.symbol, BOOK_DEPTH)
            levels = book.asks if req.side == "buy" else book.bids
            slices = paper.walk_book(
                levels,
                req.side,
                amount=req.amount if req.amount_unit == "base" else None,
                quote=req.amount if req.amount_unit == "quote" else None,
                fallback_price=last,
                slippage_bps=self.slippage_bps,
            )
            base, expected = paper.average(slices)
            if sum(a for _, a in levels) < float(base):
                warnings.append("the visible book is thinner than the order: the rest fills with slippage")
            fee_rate = taker
        else:
            expected = req.price if req.price is not None else req.stop_price  # type: ignore[assignment]
            assert expected is not None
            base = req.amount if req.amount_unit == "base" else req.amount / expected
            fee_rate = maker if req.type == "limit" else taker
            if req.type == "limit" and (expected >= last if req.side == "buy" else expected <= last):
                warnings.append("the limit is marketable: it fills now against the book, as a taker")
        base = floor_to_step(base, step_of(market.amount_step))
        regime = await self._regime(market.symbol, warnings)
        failures, _ = self.risk.check(await self._context(account.name, market, req, base, expected, fee_rate, regime))
        failures += _bracket_failures(req, expected)
        if self.market.source.simulated:
            warnings.append("prices come from the offline simulated market")
        return _Priced(
            req, account, market, base, expected, fee_rate, failures, warnings, regime, self.market.source.simulated
        )

    async def _regime(self, symbol: str, warnings: list[str]) -> str:
        try:
            return (await self.analysis.regime(symbol, REGIME_TIMEFRAME)).regime
        except HeablError as exc:
            warnings.append(f"regime unknown ({exc.code}); NORMAL limits applied")
            return "NORMAL"

    async def _context(
        self,
        account: str,
        market: MarketInfo,
        req: OrderRequest,
        base: Decimal,
        price: Decimal,
        fee_rate: Decimal,
        regime: str,
    ) -> OrderContext:
        valuation = await self.portfolio.valuation(account)
        conn = self.db.conn
        pos = ledger.position(conn, account, market.symbol)
        open_orders = conn.execute(
            f"SELECT count(*) FROM orders WHERE account = ? AND status IN {OPEN_STATUSES}", (account,)
        ).fetchone()[0]
        return OrderContext(
            account=account,
            symbol=market.symbol,
            side=req.side,
            amount=base,
            price=price,
            reduces_exposure=req.side == "sell" and pos.quantity > 0 and base <= pos.quantity,
            reduce_only=req.reduce_only,
            position_quantity=pos.quantity,
            position_value=valuation.values.get(market.symbol, ZERO),
            equity=valuation.equity,
            total_exposure=valuation.exposure,
            open_orders=open_orders,
            free_quote=valuation.free_quote,
            free_base=valuation.held.get(market.base, ledger.Holding(ZERO, ZERO)).free,
            fee_rate=fee_rate,
            min_amount=step_of(market.min_amount),
            min_notional=step_of(market.min_notional),
            leverage=Decimal(1),
            regime=regime,
        )

    # --- execution (paper) ---------------------------------------------------------------------

    async def _execute(self, priced: _Priced) -> OrderOutcome:
        req, market = priced.req, priced.market
        order_id = f"ord_{secrets.token_hex(8)}"
        now = self.clock.now()
        try:
            with self.db.write() as conn:
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
                        _t(req.price),
                        _t(req.stop_price),
                        int(req.reduce_only),
                        _t(req.stop_loss),
                        _t(req.take_profit),
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
        except sqlite3.IntegrityError:
            existing = self._existing(req)
            assert existing is not None
            return OrderOutcome(status="existing", order=existing, message="this order was already placed")
        if priced.account.mode == "live":
            return await self._execute_live(order_id, priced)
        if req.type == "market":
            book = await self.market.order_book(market.symbol, BOOK_DEPTH)
            slices = paper.walk_book(
                book.asks if req.side == "buy" else book.bids,
                req.side,
                amount=priced.base_amount,
                fallback_price=priced.expected,
                slippage_bps=self.slippage_bps,
            )
            self._fill(order_id, slices, "taker", priced.fee_rate)
        else:
            await self._rest(order_id, priced)
        order = self.order(order_id)
        attached = self._attach_brackets(order)
        return OrderOutcome(
            status="executed",
            order=order,
            attached=attached,
            message=f"{order.status}: {req.side} {order.filled}/{order.amount} {market.symbol}"
            f"{f' at {order.avg_price}' if order.avg_price else ''} on paper account "
            f"{req.account}",
        )

    async def _execute_live(self, order_id: str, priced: _Priced) -> OrderOutcome:
        req, account = priced.req, priced.account
        assert req.client_order_id is not None
        try:
            sent = await self.brokers.get(account).create(
                symbol=priced.market.symbol, side=req.side, kind=req.type, amount=priced.base_amount,
                price=req.price, stop_price=req.stop_price, client_order_id=req.client_order_id)
        except OutcomeUnknown as exc:
            self._set_status(order_id, "outcome_unknown", exc.message)
            raise
        except HeablError as exc:
            self._set_status(order_id, "rejected", exc.message)
            raise
        self._book_live(order_id, sent)
        order = self.order(order_id)
        return OrderOutcome(status="executed", order=order,
                            message=f"{order.status} on {account.exchange} (live account {account.name}): "
                                    f"{req.side} {order.filled}/{order.amount} {order.symbol}"
                                    f"{f' at {order.avg_price}' if order.avg_price else ''}")

    def _set_status(self, order_id: str, status: str, reason: str) -> None:
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT account FROM orders WHERE id = ?", (order_id,)).fetchone()
            conn.execute("UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE id = ?",
                         (status, reason, now, order_id))
            journal.append(conn, now, status, account=row["account"], order_id=order_id, reason=reason)

    def _book_live(self, order_id: str, live: LiveOrder) -> None:
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

    async def _rest(self, order_id: str, priced: _Priced) -> None:
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
                taker = Decimal(str(market.taker_fee)) if market.taker_fee is not None else DEFAULT_FEE
                self._fill(order_id, slices, "taker", taker, final=False)
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

    def _fill(
        self, order_id: str, slices: list[paper.Slice], liquidity: str, fee_rate: Decimal, *, final: bool = True
    ) -> None:
        """Book fills for an order in one transaction, re-reading it first so nothing fills twice."""
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            if row["status"] not in ("new", *OPEN_STATUSES):
                return
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
                            now,
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
                self._cancel_siblings(conn, row["oco_group"], order_id, now)

    def _attach_brackets(self, parent: OrderView) -> list[OrderView]:
        """Once a buy with stop-loss / take-profit has filled, protect it with a one-cancels-other pair."""
        row = self.db.conn.execute("SELECT stop_loss, take_profit FROM orders WHERE id = ?", (parent.id,)).fetchone()
        if parent.status != "filled" or not (row["stop_loss"] or row["take_profit"]):
            return []
        now = self.clock.now()
        children = []
        with self.db.write() as conn:
            for kind, price_column, level in (
                ("stop", "stop_price", row["stop_loss"]),
                ("limit", "price", row["take_profit"]),
            ):
                if not level:
                    continue
                child_id = f"ord_{secrets.token_hex(8)}"
                conn.execute(
                    f"INSERT INTO orders (id, account, client_order_id, symbol, side, type, amount, {price_column},"
                    " reduce_only, status, parent_id, oco_group, checked_until, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, 'sell', ?, ?, ?, 1, 'open', ?, ?, ?, ?, ?)",
                    (
                        child_id,
                        parent.account,
                        f"{parent.client_order_id}-{kind[:2]}",
                        parent.symbol,
                        kind,
                        parent.filled,
                        level,
                        parent.id,
                        parent.id,
                        int(now * 1000),
                        now,
                        now,
                    ),
                )
                journal.append(
                    conn,
                    now,
                    "attached",
                    account=parent.account,
                    order_id=child_id,
                    parent=parent.id,
                    kind="stop_loss" if kind == "stop" else "take_profit",
                    level=level,
                )
                children.append(child_id)
        return [self.order(c) for c in children]

    def _cancel_siblings(self, conn: sqlite3.Connection, group: str, filled_id: str, now: float) -> None:
        for sibling in conn.execute(
            f"SELECT * FROM orders WHERE oco_group = ? AND id != ? AND status IN {OPEN_STATUSES}", (group, filled_id)
        ).fetchall():
            self._cancel_row(conn, sibling, f"one-cancels-other: {filled_id} filled", now)

    def _cancel_row(self, conn: sqlite3.Connection, row: sqlite3.Row, reason: str, now: float) -> None:
        locked = Decimal(row["locked_amount"])
        if locked > 0:
            ledger.unlock(conn, row["account"], row["locked_asset"], locked)
        conn.execute(
            "UPDATE orders SET status = 'cancelled', locked_amount = '0', reason = ?, updated_at = ? WHERE id = ?",
            (reason, now, row["id"]),
        )
        journal.append(conn, now, "cancelled", account=row["account"], order_id=row["id"], reason=reason)

    # --- the paper matcher ---------------------------------------------------------------------

    async def match_open_orders(self) -> int:
        """Check every open paper order against the market since it was last checked, and refresh
        open live orders from their exchange.

        After a restart this catches up from one-minute candles: a limit fills if a candle traded
        through its price, a stop triggers if a candle reached it. Returns the number of paper fills."""
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

    async def _sync_live(self, row: sqlite3.Row) -> None:
        """A live order's truth is on the exchange: fetch it and record what changed."""
        if not row["exchange_order_id"]:
            return
        broker = self.brokers.get(self.accounts.get(row["account"]))
        self._book_live(row["id"], await broker.fetch(row["exchange_order_id"], row["symbol"]))

    async def _match(self, row: sqlite3.Row) -> int:
        now_ms = int(self.clock.now() * 1000)
        since = int(row["checked_until"] or now_ms)
        minutes = max(1, (now_ms - since) // 60_000 + 1)
        timeframe, count = ("1m", minutes) if minutes <= 1000 else ("1h", minutes // 60 + 1)
        candles = await self.market.candles(row["symbol"], timeframe, min(count, 5000), since - since % 60_000)
        side, kind = row["side"], row["type"]
        limit = Decimal(row["price"]) if row["price"] else None
        stop = Decimal(row["stop_price"]) if row["stop_price"] else None
        triggered = bool(row["triggered"])
        fill_price: Decimal | None = None
        liquidity = "maker"
        for candle in candles:
            high, low = Decimal(str(candle[2])), Decimal(str(candle[3]))
            if kind in ("stop", "stop_limit") and not triggered:
                assert stop is not None
                if not paper.stop_triggered(side, stop, high, low):
                    continue
                triggered = True
                self._mark_triggered(row)
                if kind == "stop":
                    slip = self.slippage_bps / paper.BPS
                    fill_price, liquidity = (stop * (1 + slip) if side == "buy" else stop * (1 - slip)), "taker"
                    break
            if limit is not None and paper.limit_reached(side, limit, high, low):
                fill_price = limit
                break
        with self.db.write() as conn:
            conn.execute(
                f"UPDATE orders SET checked_until = ? WHERE id = ? AND status IN {OPEN_STATUSES}", (now_ms, row["id"])
            )
        if fill_price is None:
            return 0
        market = await self.market.market(row["symbol"])
        fee = getattr(market, f"{liquidity}_fee")
        self._fill(
            row["id"],
            [paper.Slice(fill_price, Decimal(row["amount"]))],
            liquidity,
            Decimal(str(fee)) if fee is not None else DEFAULT_FEE,
        )
        return 1

    def _mark_triggered(self, row: sqlite3.Row) -> None:
        now = self.clock.now()
        with self.db.write() as conn:
            conn.execute("UPDATE orders SET triggered = 1, updated_at = ? WHERE id = ?", (now, row["id"]))
            journal.append(
                conn, now, "triggered", account=row["account"], order_id=row["id"], stop_price=row["stop_price"]
            )

    # --- cancel, state, queries ----------------------------------------------------------------

    async def cancel(self, order_id: str, account: str | None = None) -> OrderView:
        """Raises NotFound for an unknown order, InvalidInput when it is no longer open."""
        row = self.db.conn.execute(
            "SELECT * FROM orders WHERE id = ? OR client_order_id = ?", (order_id, order_id)
        ).fetchone()
        if row is None or (account is not None and row["account"] != account.strip().lower()):
            raise NotFound(f"unknown order {order_id!r}", hint="get_orders lists orders and their ids.")
        if row["status"] not in OPEN_STATUSES:
            raise InvalidInput(f"order {row['id']} is {row['status']}; only open orders can be cancelled")
        await self._cancel(row, "cancelled on request")
        return self.order(row["id"])

    async def _cancel(self, row: sqlite3.Row, reason: str) -> None:
        """Cancel on the exchange first for a live order, then locally."""
        if row["exchange_order_id"]:
            await self.brokers.get(self.accounts.get(row["account"])).cancel(row["exchange_order_id"], row["symbol"])
        with self.db.write() as conn:
            current = conn.execute("SELECT * FROM orders WHERE id = ?", (row["id"],)).fetchone()
            if current["status"] in OPEN_STATUSES:
                self._cancel_row(conn, current, reason, self.clock.now())

    async def cancel_all(
        self, account: str | None = None, symbol: str | None = None, reason: str = "cancel all"
    ) -> list[OrderView]:
        """Cancel every open order (optionally filtered). A live order the exchange refuses to cancel
        stays open and is logged; the others are still cancelled."""
        sql = f"SELECT * FROM orders WHERE status IN {OPEN_STATUSES}"
        params: list[Any] = []
        if account:
            sql, params = sql + " AND account = ?", [*params, account.strip().lower()]
        if symbol:
            sql, params = sql + " AND symbol = ?", [*params, symbol.strip().upper().replace("-", "/")]
        cancelled = []
        for row in self.db.conn.execute(sql, params).fetchall():
            try:
                await self._cancel(row, reason)
            except HeablError as exc:
                log.warning("could not cancel %s: %s", row["id"], exc.message)
                continue
            cancelled.append(self.order(row["id"]))
        return cancelled

    async def set_trading_state(
        self, state: TradingState, reason: str, *, confirmed: bool
    ) -> tuple[TradingStateView, list[OrderView]]:
        view = self.risk.set_state(state, reason, confirmed=confirmed)
        cancelled = await self.cancel_all(reason=f"trading halted: {reason}") if state == "HALTED" else []
        return view, cancelled

    def order(self, order_id: str) -> OrderView:
        row = self.db.conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown order {order_id!r}")
        return _view(row)

    def _existing(self, req: OrderRequest) -> OrderView | None:
        if req.client_order_id is None:
            return None
        row = self.db.conn.execute(
            "SELECT * FROM orders WHERE account = ? AND client_order_id = ?", (req.account, req.client_order_id)
        ).fetchone()
        return _view(row) if row else None

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
        return [_view(r) for r in rows]

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


def _bracket_failures(req: OrderRequest, expected: Decimal) -> list[RuleFailure]:
    failures = []
    if req.stop_loss is not None and req.stop_loss >= expected:
        failures.append(
            RuleFailure(
                code="STOP_LOSS_WRONG_SIDE",
                message=f"stop-loss {text(req.stop_loss)} is not below the entry {expected:.8g}",
            )
        )
    if req.take_profit is not None and req.take_profit <= expected:
        failures.append(
            RuleFailure(
                code="TAKE_PROFIT_WRONG_SIDE",
                message=f"take-profit {text(req.take_profit)} is not above the entry {expected:.8g}",
            )
        )
    return failures


def _t(value: Decimal | None) -> str | None:
    return text(value) if value is not None else None


def _view(row: sqlite3.Row) -> OrderView:
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
