"""Risk limits: the configured ceiling, the regime table, and how they combine.

A limit set in configuration is the user's ceiling. Overrides stored by tools can only be tighter
(or, with the user's confirmation, relaxed back up to the ceiling). Regime parameters are capped by
the limits too: a regime can only tighten, never loosen, what the user configured.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

TradingState = Literal["ACTIVE", "REDUCING", "HALTED"]
NUMERIC_LIMITS = ("max_order_notional", "max_position_fraction", "max_total_exposure", "max_open_orders",
                  "daily_loss_limit", "max_leverage", "risk_per_trade_pct", "max_risk_per_trade_pct")


@dataclass(frozen=True)
class RiskLimits:
    max_order_notional: Decimal
    max_position_fraction: Decimal
    max_total_exposure: Decimal
    max_open_orders: int
    daily_loss_limit: Decimal
    max_leverage: Decimal
    risk_per_trade_pct: Decimal
    max_risk_per_trade_pct: Decimal
    allow_symbols: tuple[str, ...] = ("*",)
    deny_symbols: tuple[str, ...] = ()

    def tightened_by(self, overrides: dict[str, Decimal], extra_deny: tuple[str, ...]) -> RiskLimits:
        changes: dict[str, object] = {}
        for name, value in overrides.items():
            current = getattr(self, name)
            changes[name] = type(current)(min(Decimal(current), value))
        return replace(self, **changes, deny_symbols=tuple(dict.fromkeys(self.deny_symbols + extra_deny)))

    def as_dict(self) -> dict[str, object]:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Decimal) else v) for f in fields(self)}

    def symbol_allowed(self, symbol: str) -> bool:
        symbol = symbol.upper()
        allowed = any(fnmatch.fnmatchcase(symbol, p) for p in self.allow_symbols)
        return allowed and not any(fnmatch.fnmatchcase(symbol, p) for p in self.deny_symbols)


@dataclass(frozen=True)
class RegimeParams:
    risk_multiplier: Decimal
    max_leverage: Decimal
    max_position_fraction: Decimal
    max_open_orders: int


REGIME_TABLE: dict[str, RegimeParams] = {
    "NORMAL": RegimeParams(Decimal("1.0"), Decimal(20), Decimal("0.5"), 5),
    "HIGH_VOLATILITY": RegimeParams(Decimal("0.6"), Decimal(10), Decimal("0.3"), 3),
    "LOW_VOLATILITY": RegimeParams(Decimal("1.2"), Decimal(25), Decimal("0.6"), 6),
    "CRASH": RegimeParams(Decimal("0.3"), Decimal(5), Decimal("0.2"), 2),
    "RALLY": RegimeParams(Decimal("0.8"), Decimal(15), Decimal("0.4"), 4),
}


class EffectiveParams(BaseModel):
    regime: str
    risk_multiplier: Decimal
    risk_per_trade_pct: Decimal
    max_leverage: Decimal
    max_position_fraction: Decimal
    max_open_orders: int
    capped_by_limits: list[str]


def effective(limits: RiskLimits, regime: str) -> EffectiveParams:
    """Regime parameters, each capped by the user's limits (never loosened by them)."""
    table = REGIME_TABLE.get(regime, REGIME_TABLE["NORMAL"])
    capped = []
    risk = limits.risk_per_trade_pct * table.risk_multiplier
    if risk > limits.max_risk_per_trade_pct:
        risk, capped = limits.max_risk_per_trade_pct, [*capped, "risk_per_trade_pct"]
    values = {}
    for name in ("max_leverage", "max_position_fraction", "max_open_orders"):
        mine, theirs = getattr(limits, name), getattr(table, name)
        values[name] = min(mine, theirs)
        if mine < theirs:
            capped.append(name)
    return EffectiveParams(regime=regime, risk_multiplier=table.risk_multiplier, risk_per_trade_pct=risk,
                           capped_by_limits=capped, **values)
