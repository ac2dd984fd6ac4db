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
from decimal import Decimal
from typing import Any

from heablcoin_mcp.core.books import journal, ledger
from heablcoin_mcp.core.books.models import BatchLeg, BatchOutcome, OrderOutcome, OrderPreview, OrderRequest, OrderView
from heablcoin_mcp.core.books.money import ZERO, dec, floor_to_step, text
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.monitor.health import ComponentHealth
from heablcoin_mcp.core.risk.engine import RiskEngine, TradingStateView, describe
from heablcoin_mcp.core.risk.limits import TradingState
from heablcoin_mcp.core.storage import Row, Storage
from heablcoin_mcp.core.trading import distribution
from heablcoin_mcp.core.trading.accounts import Account, AccountService
from heablcoin_mcp.core.trading.execution import Executor
from heablcoin_mcp.core.trading.live import LiveBrokers
from heablcoin_mcp.core.trading.portfolio import PortfolioService
from heablcoin_mcp.core.trading.pricing import Pricer
from heablcoin_mcp.core.trading.records import OPEN_STATUSES, OrderRecords, cancel_row, spend_token
from heablcoin_mcp.errors import HeablError, InvalidInput, NotFound, RiskRejected

log = logging.getLogger(__name__)

CONFIRMATION_TTL = 60.0
BATCH_PREFIX = "bat_"
SHARE_STEP = Decimal("1e-8")  # legs are then rounded down to each market's own amount step


class OrderService:
    def __init__(
        self,
        db: Storage,
        clock: Clock,
        market: MarketService,
        risk: RiskEngine,
        portfolio: PortfolioService,
        accounts: AccountService,
        brokers: LiveBrokers,
        records: OrderRecords,
        pricer: Pricer,
        executor: Executor,
        *,
        trading_mode: str,
    ) -> None:
        self.db, self.clock, self.market, self.risk = db, clock, market, risk
        self.portfolio, self.accounts, self.brokers = portfolio, accounts, brokers
        self.records, self.pricer, self.executor = records, pricer, executor
        self.trading_mode = trading_mode

    def health(self) -> ComponentHealth:
        try:
            state, open_orders = self.risk.state(), self.records.open_count()
        except Exception as exc:  # health must report, not raise
            return ComponentHealth(name="trading", status="down", detail=type(exc).__name__)
        return ComponentHealth(name="trading", status="degraded" if state.state != "ACTIVE" else "ok",
                               detail=f"{self.trading_mode} mode, trading {state.state}: {state.reason}",
                               metrics={"open_orders": open_orders, "trading_state": state.state})

    # --- preview and confirmation --------------------------------------------------------------

    async def place(self, req: OrderRequest) -> OrderOutcome:
        """Price and check an order and issue its confirmation token. Sends nothing."""
        existing = self.records.existing(req)
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
        priced = await self.pricer.price(req)
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

    def _usable_token(self, token: str) -> Row:
        """A token that may still be spent (an expired one is spent as expired, and journaled).

        Raises:
            NotFound: unknown token. InvalidInput: already used, or expired.
        """
        now = self.clock.now()
        row = self.db.conn.execute("SELECT * FROM confirmations WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise NotFound("unknown confirmation token", hint="Call place_order to get a fresh preview and token.")
        if row["used_at"] is not None:
            raise InvalidInput(
                f"this confirmation token was already used ({row['outcome']})",
                hint="A token confirms one order once; call place_order for another.",
            )
        if row["expires_at"] <= now:
            with self.db.write() as conn:
                spend_token(conn, token, now, "expired")
                journal.append(conn, now, "expired", token=token[:8])
            raise InvalidInput(
                "the confirmation expired before it was used; nothing was sent",
                hint="Call place_order again for a fresh preview.",
            )
        return row

    def _spend_token(self, token: str, outcome: str = "confirmed") -> Row:
        """Check and spend a token at once (batches, declines) and return its row."""
        row = self._usable_token(token)
        with self.db.write() as conn:
            spend_token(conn, token, self.clock.now(), outcome)
        return row

    async def confirm(self, token: str) -> OrderOutcome:
        """Execute a previewed order. Re-checks risk on fresh prices before anything is sent.

        Raises:
            NotFound / InvalidInput: unknown, used or expired token.
            RiskRejected: a rule fails now (prices or balances moved since the preview).
        """
        if token.startswith(BATCH_PREFIX):
            raise InvalidInput("this is a distribution token", hint="Use confirm_distribution for it.")
        confirmation = self._usable_token(token)
        req = OrderRequest.model_validate_json(confirmation["request"])
        existing = self.records.existing(req)
        if existing is not None:
            return OrderOutcome(status="existing", order=existing, message="this order was already placed")
        seen = OrderPreview.model_validate_json(confirmation["preview"])
        priced = await self.pricer.price(req, at_most=Decimal(seen.amount))
        if priced.failures:
            with self.db.write() as conn:
                spend_token(conn, token, self.clock.now(), "rejected")
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
        return await self.executor.execute(priced, token)

    # --- distribution over accounts: one confirmation for the whole batch ------------------------

    async def distribute(self, values: dict[str, Any], strategy: str, accounts: list[Account]) -> BatchOutcome:
        """Split an order over accounts and preview every leg; issue one token for the batch."""
        amount = dec(values.get("amount"), "amount")
        problems: dict[str, HeablError] = {}
        budgets = await self._budgets(accounts, values, problems) if strategy == "risk_based" else None
        shares = distribution.split(amount, strategy, {a.name: Decimal(str(a.weight)) for a in accounts}, budgets)
        legs: list[BatchLeg] = []
        for account in accounts:
            share = floor_to_step(shares.get(account.name, ZERO), SHARE_STEP)
            leg = BatchLeg(account=account.name, share=text(share))
            if account.name in problems:
                leg.error = problems[account.name].to_dict()
            elif share <= 0:
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

    async def _budgets(self, accounts: list[Account], values: dict[str, Any],
                       problems: dict[str, HeablError]) -> dict[str, Decimal]:
        """Each account's free room for this order; an account that cannot be valued gets none, and
        its reason goes to ``problems`` (one bad account costs its own leg, not the batch)."""
        symbol = (await self.market.market(str(values["symbol"]))).symbol
        limits = self.risk.limits()
        budgets = {}
        for account in accounts:
            try:
                valuation = await self.portfolio.valuation(account.name)
            except HeablError as exc:
                problems[account.name], budgets[account.name] = exc, ZERO
                continue
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
        return self.records.order(row["id"])

    async def _cancel(self, row: Row, reason: str) -> None:
        """Cancel on the exchange first for a live order, then locally."""
        if row["exchange_order_id"]:
            await self.brokers.get(self.accounts.get(row["account"])).cancel(row["exchange_order_id"], row["symbol"])
        with self.db.write() as conn:
            current = conn.execute("SELECT * FROM orders WHERE id = ?", (row["id"],)).fetchone()
            if current["status"] in OPEN_STATUSES:
                cancel_row(conn, current, reason, self.clock.now())

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
            cancelled.append(self.records.order(row["id"]))
        return cancelled

    async def set_trading_state(
        self, state: TradingState, reason: str, *, confirmed: bool = False, consent: str | None = None
    ) -> tuple[TradingStateView, list[OrderView]]:
        view = self.risk.set_state(state, reason, confirmed=confirmed, consent=consent)
        cancelled = await self.cancel_all(reason=f"trading halted: {reason}") if state == "HALTED" else []
        return view, cancelled
