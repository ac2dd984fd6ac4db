"""Result shapes of the analysis layer. Light on purpose (pydantic only): the MCP layer imports
them to publish tool schemas without loading numpy, pandas or TA-Lib."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

MIN_HISTORY = 250
Backend = Literal["talib", "ta"]
Regime = Literal["NORMAL", "HIGH_VOLATILITY", "LOW_VOLATILITY", "CRASH", "RALLY"]
DISCLAIMER = "Describes the chart, does not predict it; not financial advice."
MIN_WINDOW_BARS = 20


@dataclass(frozen=True)
class RegimeThresholds:
    crash_change_pct: float = -15.0
    rally_change_pct: float = 10.0
    high_vol_daily_pct: float = 6.0
    low_vol_daily_pct: float = 1.5
    window_days: float = 7.0

    def window_bars(self, timeframe_seconds: int) -> int:
        return max(MIN_WINDOW_BARS, round(self.window_days * 86400 / timeframe_seconds))


class EmaState(BaseModel):
    fast: float
    slow: float
    fast_period: int
    slow_period: int
    trend: Literal["up", "down", "flat"]


class RsiState(BaseModel):
    value: float
    period: int
    state: Literal["overbought", "oversold", "neutral"]


class MacdState(BaseModel):
    line: float
    signal: float
    histogram: float
    last_cross: Literal["bullish", "bearish"] | None = Field(description="direction of the last line/signal cross")
    cross_bars_ago: int | None


class BollingerState(BaseModel):
    upper: float
    middle: float
    lower: float
    width: float = Field(description="(upper - lower) / middle")
    percent_b: float = Field(description="(close - lower) / (upper - lower); >1 above the band, <0 below")


class AdxState(BaseModel):
    adx: float
    plus_di: float
    minus_di: float
    strength: Literal["absent", "weak", "strong", "very strong"]
    direction: Literal["bullish", "bearish"]


class AtrState(BaseModel):
    value: float
    percent_of_price: float


class IndicatorSnapshot(BaseModel):
    backend: Backend
    bars: int
    close: float
    ema: EmaState
    rsi: RsiState
    macd: MacdState
    bollinger: BollingerState
    adx: AdxState
    atr: AtrState
    settled: bool = Field(description=f"at least {MIN_HISTORY} bars: Wilder-smoothed values have settled")


class RegimeReading(BaseModel):
    regime: Regime
    change_pct: float = Field(description="close-to-close change over the window, %")
    volatility_daily_pct: float = Field(description="realised volatility scaled to one day, %")
    window_bars: int
    thresholds: dict[str, float]
    reason: str


class Vote(BaseModel):
    name: str
    vote: int = Field(description="+1 bullish, -1 bearish, 0 neutral")
    weight: float
    reason: str


class SignalSummary(BaseModel):
    bias: Literal["bullish", "bearish", "neutral"]
    score: float
    confidence: float
    votes: list[Vote]
    disclaimer: str = DISCLAIMER




class AnalysisStamp(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    as_of: str = Field(description="ISO-8601 UTC time of the newest candle used")
    simulated: bool
    bars: int = Field(description="candles analysed")


Value = float | int | str | bool | None


class IndicatorResult(BaseModel):
    params: dict[str, Value]
    values: dict[str, Value] = Field(description="latest values (and states for the core indicators)")
    series: dict[str, list[float | None]] | None = Field(None, description="last N values, oldest first")
    notes: list[str] | None = Field(None, description="why a value is null")


class IndicatorsReport(AnalysisStamp):
    backend: Backend
    settled: bool = Field(description=f"at least {MIN_HISTORY} bars, so Wilder-smoothed values have settled")
    indicators: dict[str, IndicatorResult]


class RegimeReport(AnalysisStamp, RegimeReading):
    pass


class StructureSummary(BaseModel):
    trend: str = Field(description="bullish / bearish from the last structure break, or undetermined")
    confirmation_lag_bars: int
    last_bos: dict[str, Any] | None
    last_choch: dict[str, Any] | None
    order_blocks: list[dict[str, Any]] = Field(description="unmitigated order blocks nearest the price")
    liquidity_pools: list[dict[str, Any]] = Field(description="unswept equal highs / lows nearest the price")
    fair_value_gaps: list[dict[str, Any]] = Field(description="unfilled fair value gaps nearest the price")
    counts: dict[str, int]


class MarketAnalysis(AnalysisStamp):
    last: float
    change_24h_pct: float | None
    gaps: int = Field(description="missing candles in the analysed range")
    indicators: IndicatorSnapshot
    signals: SignalSummary
    structure: StructureSummary
    regime: RegimeReading
    summary: list[str] = Field(description="3-6 plain-language lines")


class ScanRow(BaseModel):
    symbol: str
    last: float | None = None
    change_24h_pct: float | None = None
    rsi: float | None = None
    ema_trend: str | None = None
    adx: float | None = None
    volatility_daily_pct: float | None = None
    regime: Regime | None = None
    bias: str | None = None
    confidence: float | None = None
    error: str | None = Field(None, description="why this symbol could not be analysed")


class ScanReport(BaseModel):
    exchange: str
    timeframe: str
    as_of: str
    simulated: bool
    sort_by: str
    rows: list[ScanRow]
