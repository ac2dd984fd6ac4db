"""Toolset `risk`: limits, trading state and position sizing. Tightening is free; loosening asks the user.

No `from __future__ import annotations` here: the SDK must evaluate `Resolve(<local resolver>)` in the
signatures while the resolver is in scope."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.books.models import OrderView
from heablcoin_mcp.core.books.money import text
from heablcoin_mcp.core.risk.engine import LimitChange, RiskParametersView, TradingStateView
from heablcoin_mcp.core.risk.limits import NUMERIC_LIMITS, effective
from heablcoin_mcp.core.trading.sizing import PositionSize
from heablcoin_mcp.errors import ConfirmationRequired, HeablError
from heablcoin_mcp.tools._confirm import Confirm, answered_yes, client_can_ask, question, was_asked
from heablcoin_mcp.tools._types import MARKET_READ, NameList, OptionalSymbol, Symbol, Timeframe, Upper

CHANGES_STATE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
# Each limit says its unit: a model that reads "20 %" must know whether to send 20 or 0.2.
Notional = Annotated[float | str | None, Field(description="Quote (e.g. USDT) per order.")]
Fraction = Annotated[float | str | None, Field(description="Fraction of equity 0-1 per symbol: 0.2 = 20 %.")]
Exposure = Annotated[float | str | None, Field(description="Fraction of equity, all symbols: 1 = 100 %.")]
OrderCount = Annotated[float | str | None, Field(description="Open orders at once.")]
LossLimit = Annotated[float | str | None, Field(description="Quote lost today (realised PnL + fees).")]
Leverage = Annotated[float | str | None, Field(description="Times, e.g. 3.")]
Percent = Annotated[float | str | None, Field(description="Percent of equity 0-100: 1 = 1 %.")]
DenyAdd = Annotated[NameList | None, Field(description="Symbol patterns to deny, e.g. ['DOGE/*'].")]
DenyRemove = Annotated[NameList | None, Field(description="Lift denials a tool added that equal or match "
                                                          "these, e.g. ['DOGE/USDT'] (asks the user).")]
Reset = Annotated[NameList | None, Field(description="Put these back to the configured value, e.g. "
                                                     "['max_order_notional'] or ['deny_symbols'] (asks the user "
                                                     "when that loosens).")]
Reason = Annotated[str, Field(description="Why: recorded in the journal.", min_length=1, max_length=500)]


class LimitsChangeResult(BaseModel):
    applied: bool
    message: str
    changes: list[LimitChange]
    limits: dict[str, object]


class TradingStateResult(BaseModel):
    state: TradingStateView
    cancelled_orders: list[OrderView]


def limit_changes(arguments: dict[str, object]) -> dict[str, object]:
    """The limit arguments the caller actually gave (the resolver and the tool take the same names)."""
    return {name: arguments[name] for name in NUMERIC_LIMITS if arguments.get(name) is not None}


def register(server: MCPServer, app: App) -> None:
    risk = app.risk

    def plan(arguments: dict[str, object]) -> list[LimitChange]:
        """The resolver and the tool plan from the same arguments."""
        return risk.plan_limit_changes(limit_changes(arguments), arguments.get("deny_symbols_add"),  # type: ignore[arg-type]
                                       reset=arguments.get("reset"),  # type: ignore[arg-type]
                                       deny_symbols_remove=arguments.get("deny_symbols_remove"))  # type: ignore[arg-type]

    @server.tool(title="Risk parameters", annotations=MARKET_READ)
    async def get_risk_parameters(symbol: OptionalSymbol = None, timeframe: Timeframe = "1h") -> RiskParametersView:
        """The risk limits in force (settings tightened by overrides), the configured ceilings, the trading
        state (ACTIVE / REDUCING / HALTED), today's net PnL against the daily loss limit, and for a
        symbol the parameters its current regime allows (risk multiplier, leverage, position share,
        concurrent orders)."""
        limits = risk.limits()
        effective_params = None
        if symbol is not None:
            regime = (await app.analysis.regime(symbol, timeframe)).regime
            effective_params = effective(limits, regime)
        return RiskParametersView(
            state=risk.state(),
            limits=limits.as_dict(),
            configured=risk.configured.as_dict(),
            effective=effective_params,
            daily_net_pnl=text(risk.daily_net_pnl()),
            daily_loss_limit=text(limits.daily_loss_limit),
        )

    def consent_to_loosen(
        max_order_notional: Notional = None,
        max_position_fraction: Fraction = None,
        max_total_exposure: Exposure = None,
        max_open_orders: OrderCount = None,
        daily_loss_limit: LossLimit = None,
        max_leverage: Leverage = None,
        risk_per_trade_pct: Percent = None,
        max_risk_per_trade_pct: Percent = None,
        deny_symbols_add: DenyAdd = None,
        deny_symbols_remove: DenyRemove = None,
        reset: Reset = None,
        *,
        ctx: Context,
    ) -> tuple[list[LimitChange], str] | None:
        """The loosening to ask about and the single-use token its answer is bound to, or None."""
        try:
            planned = plan(locals())
        except HeablError:
            return None  # the body reports the error
        if not any(c.loosens for c in planned) or not client_can_ask(ctx):
            return None
        return planned, app.consents.ask(risk.loosen_action(planned))

    def ask_to_loosen(
        consent: Annotated[tuple[list[LimitChange], str] | None, Resolve(consent_to_loosen)],
    ) -> Elicit[Confirm] | None:
        if consent is None:
            return None
        planned, token = consent
        changes = "; ".join(f"{c.name}: {c.before} → {c.after}" for c in planned if c.loosens)
        return question(f"Loosen risk limits? {changes}", token)

    @server.tool(title="Set risk limits", annotations=CHANGES_STATE)
    async def set_risk_limits(
        reason: Reason,
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_loosen)],
        consent: Annotated[tuple[list[LimitChange], str] | None, Resolve(consent_to_loosen)],
        max_order_notional: Notional = None,
        max_position_fraction: Fraction = None,
        max_total_exposure: Exposure = None,
        max_open_orders: OrderCount = None,
        daily_loss_limit: LossLimit = None,
        max_leverage: Leverage = None,
        risk_per_trade_pct: Percent = None,
        max_risk_per_trade_pct: Percent = None,
        deny_symbols_add: DenyAdd = None,
        deny_symbols_remove: DenyRemove = None,
        reset: Reset = None,
    ) -> LimitsChangeResult:
        """Change risk limits. Tightening (a lower limit, a denied symbol) applies at once. Loosening
        asks the user through the client and applies only if they accept; a client that cannot ask
        gets `confirmation_required` and nothing changes. No limit can go above the user's configured
        ceiling (HEABLCOIN_RISK_* settings). Fractions are 0-1 (0.25 = 25 % of equity); money is in the
        quote asset. `reset` and `deny_symbols_remove` undo earlier tightening."""
        planned = plan(locals())
        if not planned:
            return LimitsChangeResult(
                applied=False, message="nothing to change", changes=[], limits=risk.limits().as_dict()
            )
        if any(c.loosens for c in planned) and was_asked(answer) and not answered_yes(answer):
            return LimitsChangeResult(
                applied=False,
                message="the user declined; nothing changed",
                changes=planned,
                limits=risk.limits().as_dict(),
            )
        token = consent[1] if consent is not None and answered_yes(answer) else None
        limits = risk.apply_limit_changes(planned, reason, consent=token)
        return LimitsChangeResult(applied=True, message="limits updated", changes=planned, limits=limits.as_dict())

    def consent_to_resume(state: str, ctx: Context) -> str | None:
        """The single-use token an answer to leaving HALTED is bound to, or None when nothing is asked."""
        if risk.state().state != "HALTED" or state.upper() == "HALTED" or not client_can_ask(ctx):
            return None
        return app.consents.ask(risk.resume_action(state.upper()))

    def ask_to_resume(
        state: str, reason: str, consent: Annotated[str | None, Resolve(consent_to_resume)]
    ) -> Elicit[Confirm] | None:
        if consent is None:
            return None
        return question(f"Trading is HALTED. Switch to {state.upper()} ({reason})?", consent)

    @server.tool(title="Set trading state", annotations=CHANGES_STATE)
    async def set_trading_state(
        state: Annotated[
            Literal["ACTIVE", "REDUCING", "HALTED"], Upper,
            Field(
                description="ACTIVE: normal. REDUCING: only orders that reduce exposure. HALTED: "
                "cancel every open order on every account and refuse new ones."
            ),
        ],
        reason: Reason,
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_resume)],
        consent: Annotated[str | None, Resolve(consent_to_resume)],
    ) -> TradingStateResult:
        """The kill switch. Halting (or REDUCING) applies at once — use it whenever the user wants to
        stop. Leaving HALTED asks the user through the client; without their yes nothing changes."""
        if was_asked(answer) and not answered_yes(answer):
            raise ConfirmationRequired("the user declined to leave HALTED; trading stays halted")
        token = consent if answered_yes(answer) else None
        view, cancelled = await app.orders.set_trading_state(state, reason, consent=token)
        return TradingStateResult(state=view, cancelled_orders=cancelled)

    @server.resource(
        "heablcoin://risk/limits",
        name="risk-limits",
        title="Risk limits and trading state",
        mime_type="application/json",
    )
    def risk_limits_resource() -> str:
        """The risk limits in force, the configured ceilings and the trading state."""
        return RiskParametersView(
            state=risk.state(),
            limits=risk.limits().as_dict(),
            configured=risk.configured.as_dict(),
            daily_net_pnl=text(risk.daily_net_pnl()),
            daily_loss_limit=text(risk.limits().daily_loss_limit),
        ).model_dump_json()

    @server.tool(title="Position size", annotations=MARKET_READ)
    async def calculate_position_size(
        symbol: Symbol,
        stop_price: Annotated[float | str | None, Field(description="Stop-loss price (below the entry).")] = None,
        stop_atr_multiple: Annotated[
            float | str | None, Field(description="Or: stop this many ATRs below the entry, e.g. 2.")
        ] = None,
        entry_price: Annotated[float | str | None, Field(description="Entry; default the last price.")] = None,
        risk_percent: Annotated[
            float | str | None,
            Field(
                description="% of equity to lose at the stop; default the configured "
                "risk per trade. Scaled by the regime, capped by the limits."
            ),
        ] = None,
        account: Annotated[str, Field(description="Account whose equity is risked.")] = "default",
        timeframe: Timeframe = "1h",
    ) -> PositionSize:
        """How much to buy so a stop-out loses a chosen share of equity:
        quantity = equity × risk% × regime multiplier / (entry − stop), rounded down to the amount step
        and shrunk to fit the notional, position, exposure and balance limits — every shrink is listed
        in `reasons`. Use it for "how big can my ETH position be with a 2 % stop?". Places nothing."""
        app.accounts.get(account)
        return await app.sizer.size(
            symbol,
            account=account.strip().lower(),
            stop_price=stop_price,
            stop_atr_multiple=stop_atr_multiple,
            entry_price=entry_price,
            risk_percent=risk_percent,
            timeframe=timeframe,
        )
