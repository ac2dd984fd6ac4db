"""Position sizing: how much to buy so that a stop-out loses a chosen share of equity.

quantity = (equity × risk % × regime multiplier) / |entry − stop|

The stop is a price or a multiple of ATR below the entry. The result is rounded down to the
market's amount step, then shrunk to fit every limit (notional per order, position share of equity,
total exposure, free balance); each shrink is reported with its reason.

The size agrees with the order check because both price alike (pricing.Pricer): without an
entry_price the entry is the executable price of a market buy of that size (the book walked, with
slippage beyond it), the caps are applied at it, and the regime is the one the rules use (1h),
whatever timeframe the ATR comes from. A smaller order never walks deeper, so what fits at the
walked price of the uncapped size fits at its own.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from heablcoin_mcp.core.analysis.service import AnalysisService
from heablcoin_mcp.core.books.money import ZERO, dec, floor_to_step, step_of, text
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.risk.engine import RiskEngine
from heablcoin_mcp.core.risk.limits import effective
from heablcoin_mcp.core.trading.portfolio import PortfolioService
from heablcoin_mcp.core.trading.pricing import Pricer, fee_of
from heablcoin_mcp.errors import InvalidInput


class PositionSize(BaseModel):
    account: str
    symbol: str
    side: str = Field(description="buy: spot positions are long, so the stop sits below the entry")
    entry_price: str
    stop_price: str
    stop_distance_pct: str
    atr: str | None
    equity: str
    regime: str
    risk_multiplier: str
    risk_percent: str = Field(description="after the regime multiplier and the max-risk cap")
    risk_amount: str = Field(description="quote lost if the stop is hit (before fees and slippage)")
    quantity: str = Field(description="base units to buy, rounded down to the amount step")
    notional: str
    max_loss_at_stop: str
    reasons: list[str] = Field(description="why the size is smaller than the raw formula gives")
    tradable: bool = Field(description="false when the size is below the exchange minimum or zero")


class PositionSizer:
    def __init__(
        self,
        market: MarketService,
        analysis: AnalysisService,
        portfolio: PortfolioService,
        risk: RiskEngine,
        pricer: Pricer,
        timeframe: str = "1h",
    ) -> None:
        self.market, self.analysis, self.portfolio, self.risk = market, analysis, portfolio, risk
        self.pricer, self.timeframe = pricer, timeframe

    async def size(
        self,
        symbol: str,
        *,
        account: str,
        stop_price: object = None,
        stop_atr_multiple: object = None,
        entry_price: object = None,
        risk_percent: object = None,
        timeframe: str | None = None,
    ) -> PositionSize:
        """Raises InvalidInput for a missing/ambiguous stop, a stop on the wrong side, or a bad risk %."""
        if (stop_price is None) == (stop_atr_multiple is None):
            raise InvalidInput(
                "give exactly one of stop_price or stop_atr_multiple",
                hint="e.g. stop_price=62000, or stop_atr_multiple=2 for a stop 2 ATR below entry.",
            )
        market = await self.market.market(symbol)
        tf = timeframe or self.timeframe
        last = Decimal(str((await self.market.ticker(market.symbol)).last))
        entry = dec(entry_price, "entry_price") if entry_price is not None else last
        if entry <= 0:
            raise InvalidInput("entry_price must be positive")
        atr: Decimal | None = None
        if stop_atr_multiple is not None:
            multiple = dec(stop_atr_multiple, "stop_atr_multiple")
            if not 0 < multiple <= 20:
                raise InvalidInput(f"stop_atr_multiple must be in (0, 20], got {multiple}")
            report = await self.analysis.indicators(market.symbol, tf, ["atr"], None)
            atr = Decimal(str(report.indicators["atr"].values["value"]))
            stop = floor_to_step(entry - multiple * atr, step_of(market.price_tick))  # floor: a wider stop
        else:
            stop = dec(stop_price, "stop_price")
        if stop <= 0:
            raise InvalidInput(f"the stop must be a positive price, got {stop:.8g}",
                               hint="stop_price is a price in the quote currency, or use stop_atr_multiple.")
        if stop >= entry:
            raise InvalidInput(f"the stop {stop:.8g} must be below the entry {entry:.8g} (spot positions are long)")
        limits = self.risk.limits()
        regime = await self.pricer.regime(market.symbol)
        params = effective(limits, regime)
        reasons: list[str] = []
        if risk_percent is not None:
            base_pct = dec(risk_percent, "risk_percent")
            if not 0 < base_pct <= 100:
                raise InvalidInput(f"risk_percent must be in (0, 100], got {base_pct}")
            pct = base_pct * params.risk_multiplier
            if pct > limits.max_risk_per_trade_pct:
                reasons.append(f"risk % capped at the configured maximum {text(limits.max_risk_per_trade_pct)}%")
                pct = limits.max_risk_per_trade_pct
        else:
            pct = params.risk_per_trade_pct
        valuation = await self.portfolio.valuation(account)
        risk_amount = valuation.equity * pct / 100
        quantity = risk_amount / (entry - stop)
        if entry_price is None:  # buy at what a market order of this size would pay, as the check will
            _, walked, _ = await self.pricer.market_fill(market.symbol, "buy", last, amount=quantity)
            if walked > entry:  # a higher entry only widens the distance to the stop below it
                entry = walked
                quantity = risk_amount / (entry - stop)
        distance = entry - stop
        fee = fee_of(market.taker_fee)
        caps = [
            (
                limits.max_order_notional / entry,
                f"capped by the maximum notional per order {text(limits.max_order_notional)}",
            ),
            (
                (params.max_position_fraction * valuation.equity - valuation.values.get(market.symbol, ZERO)) / entry,
                f"capped by the position limit {params.max_position_fraction:.0%} of equity ({regime})",
            ),
            (
                (limits.max_total_exposure * valuation.equity - valuation.exposure) / entry,
                f"capped by the total exposure limit {limits.max_total_exposure:.0%} of equity",
            ),
            (valuation.free_quote / (entry * (1 + fee)), "capped by the free quote balance"),
        ]
        for cap, reason in caps:
            if quantity > cap:
                quantity, reasons = max(cap, ZERO), [*reasons, reason]
        rounded = floor_to_step(quantity, step_of(market.amount_step))
        if rounded < quantity:
            reasons.append(f"rounded down to the amount step {market.amount_step}")
        notional = rounded * entry
        tradable = rounded > 0
        if market.min_amount is not None and rounded < dec(market.min_amount):
            tradable, reasons = False, [*reasons, f"below the exchange minimum amount {market.min_amount}"]
        if market.min_notional is not None and notional < dec(market.min_notional):
            tradable, reasons = False, [*reasons, f"below the exchange minimum notional {market.min_notional}"]
        return PositionSize(
            account=account,
            symbol=market.symbol,
            side="buy",
            entry_price=text(entry),
            stop_price=text(stop),
            stop_distance_pct=f"{distance / entry * 100:.3f}",
            atr=text(atr) if atr is not None else None,
            equity=text(valuation.equity),
            regime=regime,
            risk_multiplier=text(params.risk_multiplier),
            risk_percent=text(pct),
            risk_amount=f"{risk_amount:.2f}",
            quantity=text(rounded),
            notional=f"{notional:.2f}",
            max_loss_at_stop=f"{rounded * distance:.2f}",
            reasons=reasons,
            tradable=tradable,
        )
