"""RiskEngine: the limits in force, the trading state, and the pre-trade rules.

It runs inside the order path: OrderService calls ``check`` before any confirmation and again
right before anything is sent. Loosening (a higher limit, leaving HALTED) requires
``confirmed=True``, which only the user's answer to an elicitation (or the CLI) can supply.
"""

from __future__ import annotations

import fnmatch
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
from heablcoin_mcp.core.storage import Connection, Storage
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.errors import ConfirmationRequired, InvalidInput

STATE_KEY = "trading_state"
MAX_DENY_PATTERNS = 200
DENY_PATTERN = re.compile(r"^[A-Z0-9*?/:._\[\]!-]{1,40}$")
FRACTION_LIMITS = ("max_position_fraction", "max_total_exposure")  # 0.2 = 20 % of equity
RESETTABLE = (*NUMERIC_LIMITS, "deny_symbols")


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
    def __init__(self, db: Storage, configured: RiskLimits, clock: Clock, consents: Consents) -> None:
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

    def plan_limit_changes(self, changes: dict[str, object], deny_symbols_add: list[str] | None = None, *,
                           reset: list[str] | None = None,
                           deny_symbols_remove: list[str] | None = None) -> list[LimitChange]:
        """What would change, and whether each change loosens risk. ``reset`` puts limits back to their
        configured value (``deny_symbols``: every denial added by a tool); ``deny_symbols_remove``
        lifts added denials that equal or match a symbol. Both may loosen, like raising a limit.

        Raises:
            InvalidInput: unknown limit, not a positive number, a percentage given for a fraction, above
                the configured ceiling, or a denial that was not added by a tool.
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
            if name in FRACTION_LIMITS and value > ceiling and value / 100 <= ceiling:
                raise InvalidInput(
                    f"{name} is a fraction of equity (0.2 = 20 %), not a percentage: {value} would be "
                    f"{text(value * 100)} %", hint=f"For {value} % pass {text(value / 100)}.")
            if value > ceiling:
                raise InvalidInput(
                    f"{name} {value} is above the configured ceiling {ceiling}",
                    hint=f"Only the user can raise the ceiling: HEABLCOIN_RISK_{name.upper().removeprefix('RISK_')} "
                         "in the server's configuration.")
            before = Decimal(getattr(current, name))
            planned.append(LimitChange(name=name, before=text(before), after=text(value), loosens=value > before))
        planned += self._plan_resets(current, [r.strip().lower() for r in reset or []], set(changes))
        planned += self._plan_deny(current, deny_symbols_add or [], deny_symbols_remove or [])
        return list({(c.name, c.before, c.after): c for c in planned}.values())

    def _plan_resets(self, current: RiskLimits, names: list[str], also_set: set[str]) -> list[LimitChange]:
        planned = []
        for name in dict.fromkeys(names):
            if name not in RESETTABLE:
                raise InvalidInput(f"cannot reset {name!r}", hint=f"Reset any of: {', '.join(RESETTABLE)}.")
            if name in also_set:
                raise InvalidInput(f"{name} is both set and reset", hint="Give a new value or reset it, not both.")
            if name == "deny_symbols":
                planned += [LimitChange(name="deny_symbols_remove", before=p, after="removed", loosens=True)
                            for p in self._overrides()[1]]
                continue
            before, after = Decimal(getattr(current, name)), Decimal(getattr(self.configured, name))
            if before != after:
                planned.append(LimitChange(name=name, before=text(before), after=text(after), loosens=after > before))
        return planned

    def _plan_deny(self, current: RiskLimits, add: list[str], remove: list[str]) -> list[LimitChange]:
        patterns = [p.strip().upper() for p in [*add, *remove]]
        bad = [p for p in patterns if not DENY_PATTERN.match(p)]
        if bad:
            raise InvalidInput(f"deny pattern {bad[0][:40]!r} is not a symbol pattern",
                               hint="Use symbols or shell patterns of up to 40 characters, e.g. DOGE/* or *:USDT.")
        stored = self._overrides()[1]
        planned = []
        for wanted in dict.fromkeys(patterns[len(add):]):
            lifted = [p for p in stored if p == wanted or fnmatch.fnmatchcase(wanted, p)]
            if not lifted:
                configured = [p for p in self.configured.deny_symbols if p == wanted or fnmatch.fnmatchcase(wanted, p)]
                raise InvalidInput(
                    f"{wanted} is denied by the configuration ({', '.join(configured)})" if configured
                    else f"{wanted} is not denied by any pattern a tool added",
                    hint="Only the user can change HEABLCOIN_RISK_DENY_SYMBOLS." if configured
                    else "get_risk_parameters lists the deny patterns in force.")
            planned += [LimitChange(name="deny_symbols_remove", before=p, after="removed", loosens=True)
                        for p in lifted if all(c.before != p for c in planned)]
        fresh = [p for p in dict.fromkeys(patterns[:len(add)]) if p not in current.deny_symbols]
        if len(current.deny_symbols) + len(fresh) > MAX_DENY_PATTERNS:
            raise InvalidInput(f"at most {MAX_DENY_PATTERNS} deny patterns; {len(current.deny_symbols)} are in force",
                               hint="Use wider patterns (e.g. 'DOGE/*') instead of one per market.")
        planned += [LimitChange(name="deny_symbols", before=f"{len(current.deny_symbols)} pattern(s)", after=p,
                                loosens=False) for p in fresh]
        return planned

    @staticmethod
    def loosen_action(planned: list[LimitChange]) -> str:
        """What a user's consent to these changes is bound to."""
        return "limits:" + json.dumps(sorted((c.name, c.before, c.after) for c in planned))

    def apply_limit_changes(self, planned: list[LimitChange], reason: str, *, confirmed: bool = False,
                            consent: str | None = None) -> RiskLimits:
        """Apply the changes. A loosening needs the user: ``consent`` (their answer's token, spent here,
        in the same transaction) or ``confirmed`` (the user acting themselves, as in the CLI). A limit
        back at its configured value keeps no override, so a later change of the setting applies.

        Raises:
            ConfirmationRequired: a change loosens risk without the user, or their answer was spent or expired.
        """
        loosens = any(c.loosens for c in planned)
        if loosens and not confirmed and consent is None:
            raise ConfirmationRequired(
                "loosening a risk limit needs the user's confirmation",
                hint="Ask the user to confirm in a client that supports elicitation, or to run "
                     "`heablcoin-mcp risk reset` / `heablcoin-mcp risk allow SYMBOL` themselves.")
        now = self.clock.now()
        with self.db.write() as conn:
            if loosens and consent is not None:
                self.consents.spend(conn, consent, self.loosen_action(planned))
                confirmed = True
            _, deny = self._overrides()
            for change in planned:
                if change.name == "deny_symbols":
                    deny = tuple(dict.fromkeys((*deny, change.after)))
                elif change.name == "deny_symbols_remove":
                    deny = tuple(p for p in deny if p != change.before)
                elif Decimal(change.after) == Decimal(getattr(self.configured, change.name)):
                    conn.execute("DELETE FROM risk_overrides WHERE key = ?", (change.name,))
                else:
                    self._store(conn, change.name, change.after, reason, now)
            if any(c.name.startswith("deny_symbols") for c in planned):
                self._store(conn, "deny_symbols", json.dumps(list(deny)), reason, now)
            journal.append(conn, now, "risk_limits_changed", reason=reason,
                           changes=[c.model_dump() for c in planned], confirmed=confirmed)
        return self.limits()

    @staticmethod
    def _store(conn: Connection, key: str, value: str, reason: str, now: float) -> None:
        conn.execute("INSERT INTO risk_overrides (key, value, reason, updated_at) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value, reason = excluded.reason, "
                     "updated_at = excluded.updated_at", (key, value, reason, now))

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
        if not ctx.reduces_exposure and ctx.side == "buy":  # spot: a sell never adds exposure, it needs coins
            failures += self._exposure_rules(ctx, limits, params)
        daily = self.daily_net_pnl()
        if -daily >= limits.daily_loss_limit and not ctx.reduces_exposure:
            fail("DAILY_LOSS_LIMIT_REACHED",
                 f"today's net PnL {daily:.2f} has reached the daily loss limit {text(limits.daily_loss_limit)}")
        if ctx.side == "buy" and ctx.notional * (1 + ctx.fee_rate) > ctx.free_quote:
            fail("INSUFFICIENT_BALANCE", f"needs {ctx.notional * (1 + ctx.fee_rate):.2f} quote, "
                                         f"{ctx.free_quote:.2f} free")
        if ctx.side == "sell" and ctx.amount > ctx.free_base:
            base = ctx.symbol.split("/")[0]
            held = ctx.position_quantity - max(ctx.free_base, ZERO)
            fail("INSUFFICIENT_BALANCE",
                 (f"you hold no {base} on account {ctx.account}" if ctx.position_quantity <= ZERO
                  else f"sells {text(ctx.amount)} {base}, only {text(ctx.free_base)} free on account {ctx.account}")
                 + (f"; {text(held)} {base} is held by open orders (cancel them first)" if held > ZERO else ""))
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
