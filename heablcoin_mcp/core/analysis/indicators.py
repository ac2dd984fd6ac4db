"""The indicator engine: TA-Lib computes, `ta` stands in when TA-Lib cannot be imported.

Explicit periods are always passed (never library defaults). Wilder-smoothed indicators (RSI, ATR,
ADX) depend on their seed for a while: their values settle only after several times the period, so
the analysis fetches at least ``MIN_HISTORY`` candles by default.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from heablcoin_mcp.core.analysis.reports import (
    MIN_HISTORY,
    AdxState,
    AtrState,
    Backend,
    BollingerState,
    EmaState,
    IndicatorSnapshot,
    MacdState,
    RsiState,
)
from heablcoin_mcp.errors import InvalidInput

FLAT_TREND_PCT = 0.1  # EMAs closer than this (in % of price) mean "flat"


@dataclass(frozen=True)
class IndicatorParams:
    ema_fast: int = 12
    ema_slow: int = 26
    rsi: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_std: float = 2.0
    adx: int = 14
    atr: int = 14

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> IndicatorParams:
        """Raises InvalidInput for unknown names or out-of-range periods."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(f"unknown indicator parameter(s): {', '.join(unknown)}",
                               hint=f"Known: {', '.join(sorted(known))}.")
        try:
            params = cls(**{k: (float(v) if k == "bb_std" else int(v)) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"indicator parameters must be numbers: {exc}") from None
        for name, value in asdict(params).items():
            low, high = (0.1, 10.0) if name == "bb_std" else (2, 500)
            if not low <= value <= high:
                raise InvalidInput(f"{name} must be between {low} and {high}, got {value}")
        if params.ema_fast >= params.ema_slow or params.macd_fast >= params.macd_slow:
            raise InvalidInput("fast periods must be shorter than slow periods")
        return params

    @property
    def lookback(self) -> int:
        """Bars before every indicator has a value (ADX needs about twice its period)."""
        return max(self.ema_slow, self.macd_slow + self.macd_signal, self.bb_period, 2 * self.adx, self.atr + 1,
                   self.rsi + 1)


class IndicatorBackend(Protocol):
    name: Backend

    def ema(self, close: np.ndarray, period: int) -> np.ndarray: ...
    def rsi(self, close: np.ndarray, period: int) -> np.ndarray: ...
    def macd(self, close: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, ...]: ...
    def bbands(self, close: np.ndarray, period: int, std: float) -> tuple[np.ndarray, ...]: ...
    def adx(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> tuple[np.ndarray, ...]: ...
    def atr(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray: ...


class TalibBackend:
    name: Backend = "talib"

    def __init__(self) -> None:
        import talib

        self.talib = talib

    def ema(self, close: np.ndarray, period: int) -> np.ndarray:
        return self.talib.EMA(close, timeperiod=period)

    def rsi(self, close: np.ndarray, period: int) -> np.ndarray:
        return self.talib.RSI(close, timeperiod=period)

    def macd(self, close: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, ...]:
        return tuple(self.talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal))

    def bbands(self, close: np.ndarray, period: int, std: float) -> tuple[np.ndarray, ...]:
        return tuple(self.talib.BBANDS(close, timeperiod=period, nbdevup=std, nbdevdn=std, matype=0))

    def adx(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> tuple[np.ndarray, ...]:
        t = self.talib
        return (t.ADX(high, low, close, timeperiod=period), t.PLUS_DI(high, low, close, timeperiod=period),
                t.MINUS_DI(high, low, close, timeperiod=period))

    def atr(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
        return self.talib.ATR(high, low, close, timeperiod=period)


class TaBackend:
    """The `ta` package. Seeds differ from TA-Lib's, so early values differ; they converge."""

    name: Backend = "ta"

    def __init__(self) -> None:
        import ta

        self.ta = ta

    def ema(self, close: np.ndarray, period: int) -> np.ndarray:
        return self.ta.trend.EMAIndicator(pd.Series(close), window=period).ema_indicator().to_numpy()

    def rsi(self, close: np.ndarray, period: int) -> np.ndarray:
        return self.ta.momentum.RSIIndicator(pd.Series(close), window=period).rsi().to_numpy()

    def macd(self, close: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, ...]:
        m = self.ta.trend.MACD(pd.Series(close), window_slow=slow, window_fast=fast, window_sign=signal)
        return m.macd().to_numpy(), m.macd_signal().to_numpy(), m.macd_diff().to_numpy()

    def bbands(self, close: np.ndarray, period: int, std: float) -> tuple[np.ndarray, ...]:
        b = self.ta.volatility.BollingerBands(pd.Series(close), window=period, window_dev=std)
        return b.bollinger_hband().to_numpy(), b.bollinger_mavg().to_numpy(), b.bollinger_lband().to_numpy()

    def adx(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> tuple[np.ndarray, ...]:
        a = self.ta.trend.ADXIndicator(pd.Series(high), pd.Series(low), pd.Series(close), window=period)
        return a.adx().to_numpy(), a.adx_pos().to_numpy(), a.adx_neg().to_numpy()

    def atr(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
        a = self.ta.volatility.AverageTrueRange(pd.Series(high), pd.Series(low), pd.Series(close), window=period)
        return a.average_true_range().to_numpy()


def make_backend(preferred: Backend | None = None) -> IndicatorBackend:
    """TA-Lib when importable (or asked for), else `ta`."""
    if preferred == "ta" or (preferred is None and importlib.util.find_spec("talib") is None):
        return TaBackend()
    return TalibBackend()


@dataclass(frozen=True)
class Series:
    """Full indicator arrays, for signals and for callers that want history."""

    close: np.ndarray
    ema_fast: np.ndarray
    ema_slow: np.ndarray
    rsi: np.ndarray
    macd: np.ndarray
    macd_signal: np.ndarray
    macd_hist: np.ndarray
    bb_upper: np.ndarray
    bb_middle: np.ndarray
    bb_lower: np.ndarray
    adx: np.ndarray
    plus_di: np.ndarray
    minus_di: np.ndarray
    atr: np.ndarray


class IndicatorEngine:
    def __init__(self, backend: IndicatorBackend | None = None) -> None:
        self.backend = backend or make_backend()

    def series(self, frame: pd.DataFrame, params: IndicatorParams) -> Series:
        if len(frame) <= params.lookback:
            raise InvalidInput(f"need more than {params.lookback} candles for these periods, got {len(frame)}",
                               hint=f"Ask for more history (at least {MIN_HISTORY} recommended).")
        b = self.backend
        high, low, close = (frame[c].to_numpy() for c in ("high", "low", "close"))
        macd, signal, hist = b.macd(close, params.macd_fast, params.macd_slow, params.macd_signal)
        upper, middle, lower = b.bbands(close, params.bb_period, params.bb_std)
        adx, plus_di, minus_di = b.adx(high, low, close, params.adx)
        return Series(
            close=close, ema_fast=b.ema(close, params.ema_fast), ema_slow=b.ema(close, params.ema_slow),
            rsi=b.rsi(close, params.rsi), macd=macd, macd_signal=signal, macd_hist=hist, bb_upper=upper,
            bb_middle=middle, bb_lower=lower, adx=adx, plus_di=plus_di, minus_di=minus_di,
            atr=b.atr(high, low, close, params.atr),
        )

    def snapshot(self, frame: pd.DataFrame, params: IndicatorParams) -> tuple[IndicatorSnapshot, Series]:
        s = self.series(frame, params)
        close = float(s.close[-1])
        fast, slow = float(s.ema_fast[-1]), float(s.ema_slow[-1])
        gap_pct = (fast - slow) / close * 100
        rsi = float(s.rsi[-1])
        upper, middle, lower = float(s.bb_upper[-1]), float(s.bb_middle[-1]), float(s.bb_lower[-1])
        adx, plus_di, minus_di = float(s.adx[-1]), float(s.plus_di[-1]), float(s.minus_di[-1])
        cross, ago = last_cross(s.macd, s.macd_signal)
        atr = float(s.atr[-1])
        snapshot = IndicatorSnapshot(
            backend=self.backend.name, bars=len(frame), close=close,
            ema=EmaState(fast=fast, slow=slow, fast_period=params.ema_fast, slow_period=params.ema_slow,
                         trend="flat" if abs(gap_pct) < FLAT_TREND_PCT else ("up" if gap_pct > 0 else "down")),
            rsi=RsiState(value=rsi, period=params.rsi,
                         state="overbought" if rsi > 70 else "oversold" if rsi < 30 else "neutral"),
            macd=MacdState(line=float(s.macd[-1]), signal=float(s.macd_signal[-1]), histogram=float(s.macd_hist[-1]),
                           last_cross=cross, cross_bars_ago=ago),
            bollinger=BollingerState(upper=upper, middle=middle, lower=lower, width=(upper - lower) / middle,
                                     percent_b=(close - lower) / (upper - lower) if upper > lower else 0.5),
            adx=AdxState(adx=adx, plus_di=plus_di, minus_di=minus_di, strength=adx_strength(adx),
                         direction="bullish" if plus_di >= minus_di else "bearish"),
            atr=AtrState(value=atr, percent_of_price=atr / close * 100),
            settled=len(frame) >= MIN_HISTORY,
        )
        return snapshot, s


def adx_strength(adx: float) -> Literal["absent", "weak", "strong", "very strong"]:
    if adx > 50:
        return "very strong"
    if adx > 25:
        return "strong"
    return "weak" if adx >= 20 else "absent"


def last_cross(line: np.ndarray, signal: np.ndarray) -> tuple[Literal["bullish", "bearish"] | None, int | None]:
    """Direction of the most recent line/signal cross and how many bars ago it happened.

    Searches a growing window back from the newest bar: the last cross is usually recent, so this
    stays cheap on a million candles."""
    window = 1024
    while True:
        start = max(0, line.size - window)
        diff = line[start:] - signal[start:]
        sign = np.sign(diff[np.isfinite(diff)])
        changes = np.flatnonzero((sign[1:] != sign[:-1]) & (sign[1:] != 0))
        if changes.size:
            at = int(changes[-1]) + 1
            return ("bullish" if sign[at] > 0 else "bearish"), int(sign.size - 1 - at)
        if start == 0:
            return None, None
        window *= 8
