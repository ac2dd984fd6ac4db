"""Toolset `analysis`: indicators, market analysis, scans and regimes over the market data."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.analysis.reports import IndicatorsReport, MarketAnalysis, RegimeReport, ScanReport
from heablcoin_mcp.tools._types import MARKET_READ, NameList, Symbol, Timeframe

History = Annotated[
    int, Field(description="Candles to analyse (30-5000). Keep >= 250 so Wilder-smoothed values settle.",
               ge=30, le=5000)
]


def register(server: MCPServer, app: App) -> None:
    analysis = app.analysis

    @server.tool(title="Compute indicators", annotations=MARKET_READ)
    async def compute_indicators(
        symbol: Symbol,
        timeframe: Timeframe = "1h",
        indicators: Annotated[
            NameList,
            Field(description="Names: core ema, rsi, macd, bollinger, adx, atr (with states); extras ichimoku, "
                              "vwap, keltner, donchian; or any TA-Lib function (sma, stoch, cci, obv, mfi, ...)."),
        ] = ["ema", "rsi", "macd", "bollinger", "adx", "atr"],  # noqa: B006 - pydantic copies defaults
        params: Annotated[
            dict[str, Any] | None,
            Field(description="Core periods by name (ema_fast, ema_slow, rsi, macd_fast, macd_slow, macd_signal, "
                              "bb_period, bb_std, adx, atr), and per-indicator objects, e.g. "
                              "{'rsi': 21, 'sma': {'timeperiod': 50}}."),
        ] = None,
        history: History = 300,
        series: Annotated[int, Field(description="Also return the last N values of each output (0-100).",
                                     ge=0, le=100)] = 0,
    ) -> IndicatorsReport:
        """Technical indicators for one market: latest values, and states for the core six (EMA trend,
        RSI >70 / <30, MACD last cross and bars ago, Bollinger width and %b, ADX strength <20 / >25 /
        >50, ATR as % of price). TA-Lib computes them (`backend` says which engine ran). Ask for
        `series` only when the user needs history."""
        return await analysis.indicators(symbol, timeframe, indicators, params, history, series)

    @server.tool(title="Market analysis", annotations=MARKET_READ)
    async def market_analysis(
        symbol: Symbol,
        timeframe: Timeframe = "1h",
        history: History = 300,
        swing_length: Annotated[int, Field(description="Bars on each side of a swing point (1-50).",
                                           ge=1, le=50)] = 5,
    ) -> MarketAnalysis:
        """The full picture of one market on one timeframe: indicator states, an explained signal vote
        (trend, momentum, mean reversion, structure → bullish / bearish / neutral with confidence),
        smart-money structure (trend, last BOS / CHoCH, nearest unmitigated order blocks, unswept
        liquidity pools, unfilled fair value gaps), the volatility regime, and a 3-6 line summary to
        relay. Use this for "analyse BTC/USDT on the 4h". It describes the chart; it is not advice."""
        return await analysis.analyse(symbol, timeframe, history, swing_length)

    @server.tool(title="Scan markets", annotations=MARKET_READ)
    async def scan_market(
        symbols: Annotated[NameList, Field(description="Symbols to compare (1-30), e.g. ['BTC/USDT', 'ETH/USDT'].")],
        timeframe: Timeframe = "1h",
        sort_by: Annotated[str, Field(description="change, rsi, adx, volatility, confidence or symbol.")] = "change",
    ) -> ScanReport:
        """A compact table comparing several markets: last price, 24h change, RSI, EMA trend, ADX,
        daily volatility, regime and signal bias with confidence, sorted (highest first). Symbols are
        fetched concurrently; one that fails gets an `error` in its row instead of failing the scan."""
        return await analysis.scan(symbols, timeframe, sort_by)

    @server.tool(title="Market regime", annotations=MARKET_READ)
    async def detect_market_regime(symbol: Symbol, timeframe: Timeframe = "1h", history: History = 300) -> RegimeReport:
        """Classify the market as NORMAL, HIGH_VOLATILITY, LOW_VOLATILITY, CRASH or RALLY from the price
        change and realised volatility over the last week of bars (at least 20 bars), with the numbers
        and thresholds that decided it. The risk engine scales position sizes by this regime."""
        return await analysis.regime(symbol, timeframe, history)

    @server.prompt(title="Daily market brief")
    def daily_market_brief(
        symbols: Annotated[str, Field(description="Markets, comma-separated, e.g. 'BTC/USDT, ETH/USDT'.")]
        = "BTC/USDT, ETH/USDT, SOL/USDT",
        timeframe: Annotated[str, Field(description="Candle size for the brief, e.g. 4h or 1d.")] = "4h",
    ) -> str:
        """A ready-made request for a morning brief on a few markets."""
        return (
            f"Give me a short daily market brief for {symbols} on the {timeframe} timeframe.\n"
            f"1. Call scan_market with symbols [{symbols}] and timeframe {timeframe} for the overview.\n"
            f"2. For the two markets that moved most, call market_analysis and read its summary.\n"
            "3. Call get_system_health first if unsure whether the data is simulated, and say so if it is.\n"
            "Report per market: price and 24h change, trend, momentum, structure, regime, and what would "
            "change the picture. Describe; do not recommend trades."
        )
