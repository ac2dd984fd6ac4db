"""Valuation, portfolio and PnL reports. Money stays Decimal; reports show it as exact strings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from heablcoin_mcp.core.books import ledger
from heablcoin_mcp.core.books.money import ZERO, text
from heablcoin_mcp.core.market.service import MAX_CANDLES, MarketService, iso
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.trading.accounts import AccountService
from heablcoin_mcp.core.trading.drawdown import MAX_MARKS, Fill, drawdowns, mark_timeframe
from heablcoin_mcp.core.trading.live import LiveBrokers
from heablcoin_mcp.errors import ConfigError, HeablError, InvalidInput

Period = Literal["day", "week", "month", "all"]


@dataclass(frozen=True)
class Valuation:
    equity: Decimal
    cash: Decimal  # quote asset, free + locked
    free_quote: Decimal
    held: dict[str, ledger.Holding]  # asset -> balance, as read once (from the exchange for live accounts)
    values: dict[str, Decimal]  # symbol -> quote value of the base asset held
    marks: dict[str, Decimal]
    unpriced: list[str]  # assets we hold but cannot price

    @property
    def exposure(self) -> Decimal:
        return sum(self.values.values(), ZERO)


class BalanceView(BaseModel):
    asset: str
    free: str
    locked: str
    total: str
    value: str | None = Field(description="in the quote asset, at the mark price; null when unpriced")


class PositionView(BaseModel):
    symbol: str
    quantity: str
    avg_entry: str
    mark: str | None
    value: str | None
    unrealized_pnl: str | None
    realized_pnl: str
    fees: str
    share_of_equity_pct: str | None


class PortfolioView(BaseModel):
    account: str
    mode: str
    quote_asset: str
    as_of: str
    simulated_prices: bool
    equity: str
    cash: str
    exposure: str
    exposure_pct: str
    balances: list[BalanceView]
    positions: list[PositionView]
    unpriced_assets: list[str]


class PnlReport(BaseModel):
    account: str
    period: Period
    since: str | None
    quote_asset: str
    trades: int = Field(description="fills in the period")
    closing_trades: int = Field(description="sell fills that realised PnL")
    wins: int
    losses: int
    win_rate_pct: str | None
    realized_pnl: str
    fees: str
    net_pnl: str = Field(description="realised PnL minus fees")
    unrealized_pnl: str = Field(description="open positions at current marks")
    max_drawdown_pct: str = Field(description="largest fall of equity marked to market (cash plus coins at "
                                              "candle closes) from its running peak, within the period")
    cash_drawdown_pct: str = Field(description="the same on a cash basis: starting balance plus net realised "
                                               "PnL after each fill, within the period")
    equity_now: str


class PortfolioService:
    def __init__(self, db: Storage, market: MarketService, accounts: AccountService, brokers: LiveBrokers,
                 quote_asset: str, initial_balance: Decimal, *, trading_mode: str = "paper") -> None:
        self.db = db
        self.trading_mode = trading_mode
        self.market = market
        self.accounts = accounts
        self.brokers = brokers
        self.quote_asset = quote_asset
        self.initial_balance = initial_balance

    async def holdings(self, account: str) -> dict[str, ledger.Holding]:
        """Balances: the local ledger for paper accounts, the exchange for live ones.

        Raises:
            ConfigError: a live account while the server trades on paper (nothing signed is sent then).
        """
        found = self.accounts.get(account)
        if found.mode == "live":
            if self.trading_mode != "live":
                raise ConfigError(
                    f"account {found.name} is live, and with HEABLCOIN_TRADING_MODE={self.trading_mode} the server "
                    "sends nothing signed to an exchange, so its balances are not read",
                    hint="Use a paper account (e.g. default), or the user sets HEABLCOIN_TRADING_MODE=live.")
            return await self.brokers.get(found).balances()
        return ledger.holdings(self.db.conn, found.name)

    async def mark(self, symbol: str) -> Decimal:
        return Decimal(str((await self.market.ticker(symbol)).last))

    async def valuation(self, account: str) -> Valuation:
        held = await self.holdings(account)
        quote = held.get(self.quote_asset, ledger.Holding(ZERO, ZERO))
        values, marks, unpriced = {}, {}, []
        for asset, h in held.items():
            if asset == self.quote_asset or h.total == 0:
                continue
            symbol = f"{asset}/{self.quote_asset}"
            try:
                marks[symbol] = await self.mark(symbol)
            except HeablError:
                unpriced.append(asset)
                continue
            values[symbol] = h.total * marks[symbol]
        return Valuation(held=held, equity=quote.total + sum(values.values(), ZERO), cash=quote.total,
                         free_quote=quote.free,
                         values=values, marks=marks, unpriced=unpriced)

    async def portfolio(self, account: str, mode: str) -> PortfolioView:
        v = await self.valuation(account)
        held = v.held
        balances = []
        for asset, h in held.items():
            value = h.total if asset == self.quote_asset else v.values.get(f"{asset}/{self.quote_asset}")
            balances.append(BalanceView(asset=asset, free=text(h.free), locked=text(h.locked), total=text(h.total),
                                        value=text(value) if value is not None else None))
        views = []
        for p in ledger.positions(self.db.conn, account):
            if p.quantity == 0 and p.realized_pnl == 0:
                continue
            mark = v.marks.get(p.symbol)
            if mark is None and p.quantity > 0:
                try:
                    mark = await self.mark(p.symbol)
                except HeablError:
                    mark = None
            value = p.quantity * mark if mark is not None else None
            views.append(PositionView(
                symbol=p.symbol, quantity=text(p.quantity), avg_entry=text(p.avg_entry),
                mark=text(mark) if mark is not None else None, value=text(value) if value is not None else None,
                unrealized_pnl=text((mark - p.avg_entry) * p.quantity) if mark is not None else None,
                realized_pnl=text(p.realized_pnl), fees=text(p.fees),
                share_of_equity_pct=(f"{value / v.equity * 100:.2f}" if value is not None and v.equity else None)))
        return PortfolioView(
            account=account, mode=mode, quote_asset=self.quote_asset,
            as_of=iso(int(self.market.clock.now() * 1000)), simulated_prices=self.market.source.simulated,
            equity=text(v.equity), cash=text(v.cash), exposure=text(v.exposure),
            exposure_pct=f"{v.exposure / v.equity * 100:.2f}" if v.equity else "0",
            balances=balances, positions=views, unpriced_assets=v.unpriced)

    async def pnl_report(self, account: str, period: Period) -> PnlReport:
        if period not in ("day", "week", "month", "all"):
            raise InvalidInput(f"period must be day, week, month or all, got {period!r}")
        now = datetime.fromtimestamp(self.market.clock.now(), UTC)
        start = {"day": now.replace(hour=0, minute=0, second=0, microsecond=0),
                 "week": (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0),
                 "month": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), "all": None}[period]
        rows = self.db.conn.execute("SELECT symbol, side, price, amount, fee, realized_pnl, ts FROM fills WHERE "
                                    "account = ? ORDER BY ts, id", (account,)).fetchall()
        fills = [Fill(r["ts"], r["symbol"], r["side"], Decimal(r["price"]), Decimal(r["amount"]), Decimal(r["fee"]),
                      Decimal(r["realized_pnl"])) for r in rows]
        since = start.timestamp() if start is not None else (fills[0].ts if fills else now.timestamp())
        market_dd, cash_dd = drawdowns(fills, await self._marks(fills, since, now.timestamp()),
                                       self.initial_balance, since)
        realized = fees = ZERO
        wins = losses = closing = trades = 0
        for f in (f for f in fills if f.ts >= since):
            trades += 1
            realized += f.realized_pnl
            fees += f.fee
            if f.side == "sell":
                closing += 1
                wins += f.realized_pnl - f.fee > 0
                losses += f.realized_pnl - f.fee <= 0
        v = await self.valuation(account)
        unrealized = ZERO
        for p in ledger.positions(self.db.conn, account):
            if p.quantity > 0 and p.symbol in v.marks:
                unrealized += (v.marks[p.symbol] - p.avg_entry) * p.quantity
        return PnlReport(
            account=account, period=period, since=start.isoformat(timespec="seconds") if start else None,
            quote_asset=self.quote_asset, trades=trades, closing_trades=closing, wins=wins, losses=losses,
            win_rate_pct=f"{wins / closing * 100:.1f}" if closing else None, realized_pnl=text(realized),
            fees=text(fees), net_pnl=text(realized - fees), unrealized_pnl=text(unrealized),
            max_drawdown_pct=f"{market_dd * 100:.2f}", cash_drawdown_pct=f"{cash_dd * 100:.2f}",
            equity_now=text(v.equity))

    async def _marks(self, fills: list[Fill], since: float, now: float) -> dict[str, list[tuple[float, Decimal]]]:
        """Closes of every traded symbol over the period, each stamped when it was known (the candle's
        end). A symbol the market cannot price now is marked at its fills only."""
        timeframe, seconds = mark_timeframe(now - since)
        marks: dict[str, list[tuple[float, Decimal]]] = {}
        for symbol in dict.fromkeys(f.symbol for f in fills):
            try:
                candles = await self.market.candles(symbol, timeframe, min(MAX_CANDLES, MAX_MARKS + 1),
                                                    int(since * 1000))
            except HeablError:
                continue
            marks[symbol] = [(min(c[0] / 1000 + seconds, now), Decimal(str(c[4]))) for c in candles]
        return marks
