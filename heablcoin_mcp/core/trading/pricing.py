"""Pricing an order against the market, with the context every pre-trade rule needs.

The preview and the re-check at confirmation both go through ``Pricer.price``, so what the user saw
and what is checked before sending are computed the same way.
"""

from __future__ import annotations

from decimal import Decimal

from heablcoin_mcp.core.analysis.service import AnalysisService
from heablcoin_mcp.core.books import ledger
from heablcoin_mcp.core.books.models import OrderPreview, OrderRequest, RuleFailure
from heablcoin_mcp.core.books.money import ZERO, floor_to_step, step_of, text
from heablcoin_mcp.core.market.models import MarketInfo
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.risk.engine import OrderContext, RiskEngine
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.trading import paper
from heablcoin_mcp.core.trading.accounts import Account, AccountService
from heablcoin_mcp.core.trading.portfolio import PortfolioService
from heablcoin_mcp.core.trading.records import OrderRecords
from heablcoin_mcp.errors import ConfigError, HeablError, InvalidInput

DEFAULT_FEE = Decimal("0.001")
BOOK_DEPTH = 50
REGIME_TIMEFRAME = "1h"


class Priced:
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
            f"{f' triggered at {text(req.stop_price)}' if req.stop_price else ''} ≈ {notional:.2f} {self.market.quote}"
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


class Pricer:
    def __init__(
        self,
        db: Storage,
        market: MarketService,
        analysis: AnalysisService,
        risk: RiskEngine,
        portfolio: PortfolioService,
        accounts: AccountService,
        records: OrderRecords,
        *,
        trading_mode: str,
        slippage_bps: Decimal,
    ) -> None:
        self.db, self.market, self.analysis, self.risk = db, market, analysis, risk
        self.portfolio, self.accounts, self.records = portfolio, accounts, records
        self.trading_mode, self.slippage_bps = trading_mode, slippage_bps

    async def price(self, req: OrderRequest, *, at_most: Decimal | None = None) -> Priced:
        """``at_most``: the base amount the user saw and confirmed; re-pricing may shrink an order to
        fit its quote amount at a new price, never grow it past that."""
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
        taker = fee_of(market.taker_fee)
        maker = fee_of(market.maker_fee)
        if req.type == "market":
            base, expected, thin = await self.market_fill(
                market.symbol, req.side, last, amount=req.amount if req.amount_unit == "base" else None,
                quote=req.amount if req.amount_unit == "quote" else None)
            if thin:
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
        if at_most is not None:
            base = min(base, at_most)
        regime = await self.regime(market.symbol, warnings)
        failures, _ = self.risk.check(await self._context(account.name, market, req, base, expected, fee_rate, regime))
        failures += bracket_failures(req, expected) + stop_failures(req, ticker.bid, ticker.ask, last)
        if self.market.source.simulated:
            warnings.append("prices come from the offline simulated market")
        return Priced(
            req, account, market, base, expected, fee_rate, failures, warnings, regime, self.market.source.simulated
        )

    async def market_fill(self, symbol: str, side: str, last: Decimal, *, amount: Decimal | None = None,
                          quote: Decimal | None = None) -> tuple[Decimal, Decimal, bool]:
        """(base amount, average price, whether the visible book was too thin) of a market order now:
        the price every rule checks an order at, and the sizer sizes at."""
        book = await self.market.order_book(symbol, BOOK_DEPTH)
        levels = book.asks if side == "buy" else book.bids
        slices = paper.walk_book(levels, side, amount=amount, quote=quote, fallback_price=last,
                                 slippage_bps=self.slippage_bps)
        base, average = paper.average(slices)
        return base, average, sum(a for _, a in levels) < float(base)

    async def regime(self, symbol: str, warnings: list[str] | None = None) -> str:
        """The regime every risk rule uses: detected on REGIME_TIMEFRAME, whatever chart the user reads."""
        try:
            return (await self.analysis.regime(symbol, REGIME_TIMEFRAME)).regime
        except HeablError as exc:
            if warnings is not None:
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
        open_orders = self.records.open_count(account)
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


def bracket_failures(req: OrderRequest, expected: Decimal) -> list[RuleFailure]:
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


def stop_failures(req: OrderRequest, bid: float | None, ask: float | None, last: Decimal) -> list[RuleFailure]:
    """A stop already on the wrong side of the market would trigger at once and, filled at the stop,
    beat the market: venues refuse it, and so do we."""
    if req.type not in ("stop", "stop_limit") or req.stop_price is None:
        return []
    if req.side == "buy":
        market = Decimal(str(ask)) if ask is not None else last
        if req.stop_price <= market:
            return [RuleFailure(code="STOP_WOULD_TRIGGER_IMMEDIATELY", message=(
                f"a buy stop at {text(req.stop_price)} is at or below the ask {market:.10g}: it would trigger at "
                "once; use a market or limit order, or a stop above the ask"))]
    else:
        market = Decimal(str(bid)) if bid is not None else last
        if req.stop_price >= market:
            return [RuleFailure(code="STOP_WOULD_TRIGGER_IMMEDIATELY", message=(
                f"a sell stop at {text(req.stop_price)} is at or above the bid {market:.10g}: it would trigger "
                "at once; use a market or limit order, or a stop below the bid"))]
    return []


def fee_of(rate: float | None) -> Decimal:
    """A market's fee rate, or the conservative default when the exchange does not say."""
    return Decimal(str(rate)) if rate is not None else DEFAULT_FEE
