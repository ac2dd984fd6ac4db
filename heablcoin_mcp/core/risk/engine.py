"""RiskEngine: the limits in force, the trading state, and the pre-trade rules.

It runs inside the order path: OrderService calls ``check`` before any confirmation and again
right before anything is sent. Loosening (a higher limit, leaving HALTED) requires
``confirmed=True``, which only the user's answer to an elicitation (or the CLI) can supply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from heablcoin_mcp.core.books import journal, ledger
from heablcoin_mcp.core.books.models import RuleFailure
from heablcoin_mcp.core.books.money import ZERO, dec, text
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.risk.limits import NUMERIC_LIMITS, EffectiveParams, RiskLimits, TradingState, effective
from heablcoin_mcp.core.storage import Database
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.errors import ConfirmationRequired, InvalidInput

STATE_KEY = "trading_state"
MAX_DENY_PATTERNS = 200
DENY_PATTERN = re.compile(r"^[A-Z0-9*?/:._\[\]!-]{1,40}$")


class TradingStateView(BaseModel):
    state: TradingState
    reason: str
    since: str | None


@dataclass(frozen=True)
class OrderContext:
    """Everything a pre-trade rule may look at, priced before the checks run."""

    account: str
    symbol: str
    side: str
    amount: Decimal  # base units
    price: Decimal  # expected fill price
    reduces_exposure: bool
    reduce_only: bool
    position_quantity: Decimal
    position_value: Decimal  # quote, after marks
    equity: Decimal
    total_exposure: Decimal  # quote, all symbols, before this order
    open_orders: int
    free_quote: Decimal
    free_base: Decimal
    fee_rate: Decimal
    min_amount: Decimal | None
    min_notional: Decimal | None
    leverage: Decimal
    regime: str

    @property
    def notional(self) -> Decimal:
        return self.amount * self.price


class LimitChange(BaseModel):
    name: str
    before: str
    after: str
    loosens: bool


class RiskEngine:
    def __init__(self, db: Database, configured: RiskLimits, clock: Clock, consents: Consents) -> None:
        self.db = db
        self.configured = configured
        self.clock = clock
        self.consents = consents

    # --- limits --------------------------------------------------------------------------------

    def _overrides(self) -> tuple[dict[str, Decimal], tuple[str, ...]]:
        rows = self.db.conn.execute("SELECT key, value FROM risk_overrides").fetchall()
        numeric = {r[0]: Decimal(r[1]) for r in rows if r[0] in NUMERIC_LIMITS}
        deny = next((tuple(json.loads(r[1])) for r in rows if r[0] == "deny_symbols"), ())
        return numeric, deny

    def limits(self) -> RiskLimits:
        numeric, deny = self._overrides()
        return self.configured.tightened_by(numeric, deny)

    def plan_limit_changes(self, changes: dict[str, object], deny_symbols_add: list[str] | None) -> list[LimitChange]:
        """What would change, and whether each change loosens risk.

        Raises:
            InvalidInput: unknown limit, not a positive number, or above the configured ceiling.
        """
        current = self.limits()
        planned = []
        for name, raw in changes.items():
            if name not in NUMERIC_LIMITS:
                raise InvalidInput(f"unknown risk limit {name!r}", hint=f"Limits: {', '.join(NUMERIC_LIMITS)}.")
            value = dec(raw, name)
            if value <= 0:
                raise InvalidInput(f"{name} must be positive, got {value}")
            ceiling = Decimal(getattr(self.configured, name))
            if value > ceiling:
                raise InvalidInput(
                    f"{name} {value} is above the configured ceiling {ceiling}",
                    hint=f"Only the user can raise the ceiling: HEABLCOIN_RISK_{name.upper().removeprefix('RISK_')} "
                         "in the server's configuration.")
            before = Decimal(getattr(current, name))
            planned.append(LimitChange(name=name, before=text(before), after=text(value), loosens=value > before))
        patterns = [p.strip().upper() for p in deny_symbols_add or []]
        bad = [p for p in patterns if not DENY_PATTERN.match(p)]
        if bad:
            raise InvalidInput(f"deny pattern {bad[0][:40]!r} is not a symbol pattern",
                               hint="Use symbols or shell patterns of up to 40 characters, e.g. DOGE/* or *:USDT.")
        fresh = [p for p in dict.fromkeys(patterns) if p not in current.deny_symbols]
        if len(current.deny_symbols) + len(fresh) > MAX_DENY_PATTERNS:
            raise InvalidInput(f"at most {MAX_DENY_PATTERNS} deny patterns; {len(current.deny_symbols)} are in force",
                               hint="Use wider patterns (e.g. 'DOGE/*') instead of one per market.")
        for pattern in fresh:
            planned.append(LimitChange(name="deny_symbols", before=f"{len(current.deny_symbols)} pattern(s)",
                                       after=pattern, loosens=False))
        return planned

    @staticmethod
    def loosen_action(planned: list[LimitChange]) -> str:
        """What a user's consent to these changes is bound to."""
        return "limits:" + json.dumps(sorted((c.name, c.after) for c in planned))

    def apply_limit_changes(self, planned: list[LimitChange], reason: str, *, confirmed: bool = False,
                            consent: str | None = None) -> RiskLimits:
        """Apply the changes. A loosening needs the user: ``consent`` (their answer's token, spent here,
        in the same transaction) or ``confirmed`` (the user acting themselves, as in the CLI).

        Raises:
            ConfirmationRequired: a change loosens risk without the user, or their answer was spent or expired.
        """
        loosens = any(c.loosens for c in planned)
        if loosens and not confirmed and consent is None:
            raise ConfirmationRequired(
                "loosening a risk limit needs the user's confirmation",
                hint="Ask the user to confirm in a client that supports elicitation, or to change the "
                     "HEABLCOIN_RISK_* settings themselves.")
        now = self.clock.now()
        with self.db.write() as conn:
            if loosens and consent is not None:
                self.consents.spend(conn, consent, self.loosen_action(planned))
                confirmed = True
            _, deny = self._overrides()
            for change in planned:
                if change.name == "deny_symbols":
                    deny = tuple(dict.fromkeys((*deny, change.after)))
                    value = json.dumps(list(deny))
                else:
                    value = change.after
                conn.execute("INSERT INTO risk_overrides (key, value, reason, updated_at) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value, reason = excluded.reason, "
                             "updated_at = excluded.updated_at", (change.name, value, reason, now))
            journal.append(conn, now, "risk_limits_changed", reason=reason,
                           changes=[c.model_dump() for c in planned], confirmed=confirmed)
        return self.limits()

    # --- trading state -------------------------------------------------------------------------

    def state(self) -> TradingStateView:
        row = self.db.conn.execute("SELECT value FROM kv WHERE key = ?", (STATE_KEY,)).fetchone()
        if row is None:
            return TradingStateView(state="ACTIVE", reason="default", since=None)
        return TradingStateView(**json.loads(row[0]))

    @staticmethod
    def resume_action(state: str) -> str:
        """What a user's consent to leave HALTED for ``state`` is bound to."""
        return f"trading_state:HALTED->{state}"

    def set_state(self, state: TradingState, reason: str, *, confirmed: bool = False,
                  consent: str | None = None) -> TradingStateView:
        """Set the trading state. Leaving HALTED needs the user: ``consent`` (their answer's token, spent
        here in the same transaction) or ``confirmed`` (the user acting themselves, as in the CLI).

        Raises:
            ConfirmationRequired: leaving HALTED without the user, or their answer was spent or expired.
        """
        if state not in ("ACTIVE", "REDUCING", "HALTED"):
            raise InvalidInput(f"trading state must be ACTIVE, REDUCING or HALTED, got {state!r}")
        before = self.state()
        resuming = before.state == "HALTED" and state != "HALTED"
        if resuming and not confirmed and consent is None:
            raise ConfirmationRequired(
                "leaving HALTED needs the user's confirmation",
                hint="Ask the user to confirm (elicitation), or run `heablcoin-mcp trading-state active` themselves.")
        now = self.clock.now()
        view = TradingStateView(state=state, reason=reason,
                                since=datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"))
        with self.db.write() as conn:
            if resuming and consent is not None:
                self.consents.spend(conn, consent, self.resume_action(state))
                confirmed = True
            conn.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value, updated_at = excluded.updated_at",
                         (STATE_KEY, view.model_dump_json(), now))
            journal.append(conn, now, "trading_state_changed", before=before.state, after=state, reason=reason,
                           confirmed=confirmed)
        return view

    # --- rules ---------------------------------------------------------------------------------

    def daily_net_pnl(self) -> Decimal:
        now = self.clock.now()
        midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return ledger.net_pnl_since(self.db.conn, midnight.timestamp())

    def check(self, ctx: OrderContext) -> tuple[list[RuleFailure], EffectiveParams]:
        """Every failed rule, each with a reason code. An empty list means the order may proceed."""
        limits = self.limits()
        params = effective(limits, ctx.regime)
        failures: list[RuleFailure] = []

        def fail(code: str, message: str) -> None:
            failures.append(RuleFailure(code=code, message=message))

        state = self.state()
        if state.state == "HALTED":
            fail("TRADING_HALTED", f"trading is halted: {state.reason}")
        elif state.state == "REDUCING" and not ctx.reduces_exposure:
            fail("TRADING_REDUCING_ONLY", "only orders that reduce exposure are allowed while REDUCING")
        if ctx.reduce_only and not ctx.reduces_exposure:
            fail("REDUCE_ONLY_WOULD_INCREASE", "reduce-only order would increase the position")
        if not limits.symbol_allowed(ctx.symbol):
            fail("SYMBOL_NOT_ALLOWED", f"{ctx.symbol} is not allowed by the allow/deny lists")
        if ctx.min_amount is not None and ctx.amount < ctx.min_amount:
            fail("BELOW_EXCHANGE_MIN", f"amount {text(ctx.amount)} is below the minimum {text(ctx.min_amount)}")
        if ctx.min_notional is not None and ctx.notional < ctx.min_notional:
            fail("BELOW_EXCHANGE_MIN", f"notional {ctx.notional:.2f} is below the minimum {text(ctx.min_notional)}")
        if ctx.leverage > params.max_leverage:
            fail("LEVERAGE_EXCEEDS_MAX", f"leverage {ctx.leverage} above {params.max_leverage} ({ctx.regime})")
        if not ctx.reduces_exposure:
            failures += self._exposure_rules(ctx, limits, params)
        daily = self.daily_net_pnl()
        if -daily >= limits.daily_loss_limit and not ctx.reduces_exposure:
            fail("DAILY_LOSS_LIMIT_REACHED",
                 f"today's net PnL {daily:.2f} has reached the daily loss limit {text(limits.daily_loss_limit)}")
        if ctx.side == "buy" and ctx.notional * (1 + ctx.fee_rate) > ctx.free_quote:
            fail("INSUFFICIENT_BALANCE", f"needs {ctx.notional * (1 + ctx.fee_rate):.2f} quote, "
                                         f"{ctx.free_quote:.2f} free")
        if ctx.side == "sell" and ctx.amount > ctx.free_base:
            fail("INSUFFICIENT_BALANCE", f"sells {text(ctx.amount)}, only {text(ctx.free_base)} free")
        return failures, params

    @staticmethod
    def _exposure_rules(ctx: OrderContext, limits: RiskLimits, params: EffectiveParams) -> list[RuleFailure]:
        found = []
        if ctx.notional > limits.max_order_notional:
            found.append(RuleFailure(code="NOTIONAL_EXCEEDS_MAX", message=(
                f"notional {ctx.notional:.2f} above the {text(limits.max_order_notional)} maximum per order")))
        if ctx.open_orders >= params.max_open_orders:
            found.append(RuleFailure(code="MAX_OPEN_ORDERS_REACHED", message=(
                f"{ctx.open_orders} open orders; the limit is {params.max_open_orders} ({ctx.regime})")))
        if ctx.equity > ZERO:
            after = ctx.position_value + ctx.notional
            if after > params.max_position_fraction * ctx.equity:
                found.append(RuleFailure(code="POSITION_FRACTION_EXCEEDED", message=(
                    f"{ctx.symbol} would be {after / ctx.equity:.1%} of equity; the limit is "
                    f"{params.max_position_fraction:.0%} ({ctx.regime})")))
            if ctx.total_exposure + ctx.notional > limits.max_total_exposure * ctx.equity:
                found.append(RuleFailure(code="TOTAL_EXPOSURE_EXCEEDED", message=(
                    f"total exposure would be {(ctx.total_exposure + ctx.notional) / ctx.equity:.1%} of equity; "
                    f"the limit is {limits.max_total_exposure:.0%}")))
        return found


def describe(failures: list[RuleFailure]) -> str:
    return "; ".join(f"{f.code}: {f.message}" for f in failures)


class RiskParametersView(BaseModel):
    state: TradingStateView
    limits: dict[str, object] = Field(description="limits in force (configuration tightened by overrides)")
    configured: dict[str, object] = Field(description="the user's configured ceilings")
    effective: EffectiveParams | None = Field(None, description="for the symbol's current regime")
    daily_net_pnl: str
    daily_loss_limit: str
