"""Toolset `trading`: orders (always confirmed by the user), portfolio, history and PnL.

No `from __future__ import annotations` here: see tools/risk.py."""

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.books import journal
from heablcoin_mcp.core.books.models import FillView, OrderOutcome, OrderRequest, OrderView
from heablcoin_mcp.core.trading.portfolio import PnlReport, PortfolioView
from heablcoin_mcp.errors import RiskRejected
from heablcoin_mcp.tools._confirm import Confirm, answered_yes, client_can_ask, question, was_asked
from heablcoin_mcp.tools._types import MARKET_READ, AccountFilter, Lower, OptionalSymbol, Symbol

ORDER_ARGUMENTS = ("symbol", "side", "amount", "amount_unit", "order_type", "price", "stop_price", "stop_loss",
                   "take_profit", "reduce_only", "client_order_id", "account")
PLACES_ORDERS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
CANCELS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
Account = Annotated[str, Field(description="Account name; 'default' is the paper account.")]
Price = Annotated[float | str | None, Field(description="Price in the quote currency.")]


class OrdersResult(BaseModel):
    count: int
    orders: list[OrderView]


class TradesResult(BaseModel):
    count: int
    trades: list[FillView]


def register(server: MCPServer, app: App) -> None:
    orders = app.orders

    def request(arguments: dict[str, Any]) -> OrderRequest:
        """The order the caller asked for (the resolver and the tool take the same argument names)."""
        values = {name: arguments[name] for name in ORDER_ARGUMENTS}
        return OrderRequest.build(type=values.pop("order_type"), **values)

    async def preview_order(
        symbol: str,
        side: str,
        amount: float | str,
        amount_unit: str = "base",
        order_type: str = "market",
        price: Price = None,
        stop_price: Price = None,
        stop_loss: Price = None,
        take_profit: Price = None,
        reduce_only: bool = False,
        client_order_id: str | None = None,
        account: str = "default",
    ) -> OrderOutcome:
        """The priced, risk-checked preview; the question and the tool body share this one per call."""
        return await orders.place(request(locals()))

    def ask_to_place(
        outcome: Annotated[OrderOutcome, Resolve(preview_order)], ctx: Context
    ) -> Elicit[Confirm] | None:
        if not client_can_ask(ctx) or outcome.preview is None or outcome.confirmation_token is None:
            return None
        warnings = f" Note: {'; '.join(outcome.preview.warnings)}." if outcome.preview.warnings else ""
        return question(f"Place this order? {outcome.preview.summary}.{warnings}", outcome.confirmation_token)

    @server.tool(title="Place order", annotations=PLACES_ORDERS)
    async def place_order(
        symbol: Symbol,
        side: Annotated[Literal["buy", "sell"], Lower, Field(description="buy or sell")],
        amount: Annotated[float | str, Field(description="How much, in amount_unit. Must be positive.")],
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_place)],
        outcome: Annotated[OrderOutcome, Resolve(preview_order)],
        amount_unit: Annotated[
            Literal["base", "quote"], Lower, Field(description="'base' = coins (0.01 BTC); 'quote' = money (100 USDT).")
        ] = "base",
        order_type: Annotated[
            Literal["market", "limit", "stop", "stop_limit"], Lower,
            Field(description="market, limit (needs price), stop (needs stop_price), stop_limit (needs both)"),
        ] = "market",
        price: Price = None,
        stop_price: Price = None,
        stop_loss: Annotated[
            float | str | None, Field(description="Attach a protective sell stop at this price once a buy fills.")
        ] = None,
        take_profit: Annotated[
            float | str | None,
            Field(description="Attach a sell limit at this price once a buy fills (one cancels the other)."),
        ] = None,
        reduce_only: Annotated[bool, Field(description="Refuse if the order would increase the position.")] = False,
        client_order_id: Annotated[
            str | None,
            Field(
                description="Your id for idempotency: resubmitting it returns the existing order, never a second one."
            ),
        ] = None,
        account: Account = "default",
    ) -> OrderOutcome:
        """Place an order, always confirmed by the user: priced (market orders against the book), checked
        by the risk engine (failed rules come back with codes) and shown to the user — asked directly
        when the client supports elicitation, else the result is `confirmation_required` with a preview
        and a token: show the preview and call confirm_order(token) only after they say yes. Paper unless
        the account is live in live mode. "buy 100 USDT of SOL" = buy, amount 100, amount_unit quote."""
        if outcome.status == "rejected" and outcome.preview is not None:
            raise RiskRejected(
                outcome.message,
                hint="Nothing was sent. Adjust the order or the risk settings.",
                details={"codes": [f.code for f in outcome.preview.failures], "preview": outcome.preview.summary},
            )
        if outcome.status != "confirmation_required" or not was_asked(answer):
            return outcome
        assert outcome.confirmation_token is not None
        if answered_yes(answer):
            return await orders.confirm(outcome.confirmation_token)
        return orders.decline(outcome.confirmation_token, "the user declined")

    @server.tool(title="Confirm order", annotations=PLACES_ORDERS)
    async def confirm_order(
        token: Annotated[str, Field(description="confirmation_token from place_order", min_length=8, max_length=80)],
    ) -> OrderOutcome:
        """Execute an order the USER has confirmed. Call it only after showing them the preview from
        place_order and hearing yes — never on your own. The token is single use, valid 60 s, and bound to
        that exact order; risk is checked again on fresh prices before anything is sent."""
        return await orders.confirm(token.strip())

    @server.tool(title="Cancel order", annotations=CANCELS)
    async def cancel_order(
        order_id: Annotated[str, Field(description="Order id (ord_…) or your client_order_id.")],
        account: Annotated[str | None, Field(description="Account, to guard against cancelling on another.")] = None,
    ) -> OrderView:
        """Cancel one open order (limit, stop, or an attached stop-loss / take-profit) and release the funds
        it reserved. Cancelling needs no confirmation: it only ever reduces what can happen."""
        return await orders.cancel(order_id, account)

    @server.tool(title="Cancel all orders", annotations=CANCELS)
    async def cancel_all_orders(account: AccountFilter = None, symbol: OptionalSymbol = None) -> OrdersResult:
        """Cancel every open order, optionally only on one account and/or symbol, releasing reserved funds.
        Use set_trading_state HALTED instead to also refuse new orders."""
        cancelled = await orders.cancel_all(account, symbol)
        return OrdersResult(count=len(cancelled), orders=cancelled)

    @server.tool(title="Orders", annotations=MARKET_READ)
    def get_orders(
        status: Annotated[Literal["open", "closed", "all"], Lower,
                          Field(description="open, closed or all")] = "open",
        symbol: OptionalSymbol = None,
        account: AccountFilter = None,
        limit: Annotated[int, Field(description="Newest first, 1-500.", ge=1, le=500)] = 50,
    ) -> OrdersResult:
        """Orders with status (open, partially_filled, filled, cancelled, rejected), amounts, average fill
        price and fees, newest first. Attached stop-loss / take-profit orders show their parent_id."""
        found = app.records.orders(status, symbol, account, limit)
        return OrdersResult(count=len(found), orders=found)

    @server.tool(title="Portfolio", annotations=MARKET_READ)
    async def get_portfolio(account: Account = "default") -> PortfolioView:
        """Balances (free / locked), positions with average entry, mark price, unrealised and realised
        PnL and fees, equity, cash and exposure (also as % of equity) for one account."""
        found = app.accounts.get(account)
        return await app.portfolio.portfolio(found.name, found.mode)

    @server.tool(title="Trade history", annotations=MARKET_READ)
    def get_trade_history(
        account: AccountFilter = None,
        symbol: OptionalSymbol = None,
        limit: Annotated[int, Field(description="Newest first, 1-500.", ge=1, le=500)] = 50,
    ) -> TradesResult:
        """Fills (executions) with price, amount, fee, maker/taker liquidity and the realised PnL of each
        sell, newest first. Use get_pnl_report for totals."""
        trades = app.records.trades(account, symbol, limit)
        return TradesResult(count=len(trades), trades=trades)

    @server.tool(title="PnL report", annotations=MARKET_READ)
    async def get_pnl_report(
        account: Account = "default",
        period: Annotated[
            Literal["day", "week", "month", "all"], Lower,
            Field(description="day, week or month (calendar, UTC) or all"),
        ] = "all",
    ) -> PnlReport:
        """Realised and unrealised PnL, fees, trade count, win rate of closing trades, and the maximum
        drawdown of the equity curve for a period."""
        found = app.accounts.get(account)
        return await app.portfolio.pnl_report(found.name, period)

    @server.resource(
        "heablcoin://portfolio/{account}",
        name="portfolio",
        title="Portfolio of an account",
        mime_type="application/json",
    )
    async def portfolio_resource(account: str) -> str:
        """Balances, positions, equity and exposure of one account (e.g. heablcoin://portfolio/default)."""
        found = app.accounts.get(account)
        return (await app.portfolio.portfolio(found.name, found.mode)).model_dump_json()

    @server.resource("heablcoin://orders/open", name="open_orders", title="Open orders", mime_type="application/json")
    def open_orders_resource() -> str:
        """Every resting order of every account (limit, stop, partly filled), oldest first; subscribe to hear
        of each placement, fill, trigger and cancel."""
        return json.dumps([o.model_dump(mode="json") for o in reversed(app.records.orders("open", limit=500))])

    @server.resource(
        "heablcoin://journal/recent", name="journal", title="Recent order journal", mime_type="application/json"
    )
    def journal_resource() -> str:
        """The last 100 journal entries (intents, fills, cancels, declines, risk rejections), newest first."""
        return json.dumps([e.model_dump() for e in journal.recent(app.db, limit=100)])

    @server.prompt(title="Pre-trade checklist")
    def pre_trade_checklist(
        symbol: Annotated[str, Field(description="Market to trade, e.g. BTC/USDT.")],
        side: Annotated[str, Field(description="buy or sell.")] = "buy",
    ) -> str:
        """Walk through the checks a careful trader makes before an order."""
        return (
            f"Before I {side} {symbol}, go through this checklist with me:\n"
            "1. get_system_health: paper or live? simulated prices?\n"
            f"2. market_analysis {symbol}: trend, structure, regime — and what would invalidate the idea.\n"
            "3. get_risk_parameters: trading state, limits, today's PnL against the daily loss limit.\n"
            f"4. calculate_position_size {symbol} with a stop below a structural level (or 2 ATR).\n"
            "5. get_portfolio: how this changes my exposure.\n"
            "Then summarise entry, stop, size, risk in USDT and reward/risk. Do not place the order until I say so; "
            "when I do, use place_order and show me its preview."
        )

    @server.prompt(title="Post-trade review")
    def post_trade_review(
        order_id: Annotated[str, Field(description="The order to review (an id from get_orders).")],
    ) -> str:
        """Review a finished trade and what to learn from it."""
        return (
            f"Review order {order_id}: call get_orders (status all) and get_trade_history to find its fills, "
            "read the heablcoin://journal/recent resource for its journal entries, and get_pnl_report. Tell me the "
            "entry and exit, fees, realised PnL, whether the plan (stop, target, size) was followed, and one thing "
            "to keep and one to change next time."
        )
