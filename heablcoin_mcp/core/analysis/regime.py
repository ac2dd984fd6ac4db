"""Market regime from realised volatility and price change over a window.

Rules, checked in order (thresholds configurable through Settings):
1. change over the window <= crash_change_pct (default -15 %)  -> CRASH
2. change over the window >= rally_change_pct (default +10 %)  -> RALLY
3. daily-equivalent volatility > high_vol_daily_pct (default 6 %) -> HIGH_VOLATILITY
4. daily-equivalent volatility < low_vol_daily_pct (default 1.5 %) -> LOW_VOLATILITY
5. otherwise NORMAL
The window is ``window_days`` of bars (default 7 days), at least ``MIN_WINDOW_BARS`` bars, and no
more than the history given (a 5m chart of 300 candles is judged over its 25 hours).
Volatility is the standard deviation of log returns over the window, scaled to one day by
sqrt(bars per day). The change is compared in Decimal, from the prices as quoted: 3 -> 3.3 is
exactly +10 % and a RALLY (in binary floats it is 9.999999999999996 %).
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np

from heablcoin_mcp.core.analysis.reports import MIN_WINDOW_BARS, Regime, RegimeReading, RegimeThresholds
from heablcoin_mcp.errors import InvalidInput


def detect_regime(close: np.ndarray, timeframe_seconds: int, thresholds: RegimeThresholds) -> RegimeReading:
    """Raises InvalidInput when there are fewer closes than the window needs."""
    if close.size < MIN_WINDOW_BARS + 1:
        raise InvalidInput(f"regime detection needs {MIN_WINDOW_BARS + 1} candles, got {close.size}",
                           hint="Ask for more history.")
    window = min(thresholds.window_bars(timeframe_seconds), close.size - 1)
    recent = close[-(window + 1):]
    change = (Decimal(str(float(recent[-1]))) / Decimal(str(float(recent[0]))) - 1) * 100
    returns = np.diff(np.log(recent))
    volatility = float(np.std(returns, ddof=1) * math.sqrt(86400 / timeframe_seconds) * 100)
    t = thresholds
    if change <= Decimal(str(t.crash_change_pct)):
        regime: Regime = "CRASH"
        reason = f"price fell {change:.1f}% over {window} bars (crash at <= {t.crash_change_pct:g}%)"
    elif change >= Decimal(str(t.rally_change_pct)):
        regime = "RALLY"
        reason = f"price rose {change:.1f}% over {window} bars (rally at >= {t.rally_change_pct:g}%)"
    elif volatility > t.high_vol_daily_pct:
        regime = "HIGH_VOLATILITY"
        reason = f"daily volatility {volatility:.2f}% is above {t.high_vol_daily_pct:g}%"
    elif volatility < t.low_vol_daily_pct:
        regime = "LOW_VOLATILITY"
        reason = f"daily volatility {volatility:.2f}% is below {t.low_vol_daily_pct:g}%"
    else:
        regime = "NORMAL"
        reason = (f"change {change:+.1f}% and daily volatility {volatility:.2f}% are within the normal bands")
    return RegimeReading(
        regime=regime, change_pct=round(float(change), 4), volatility_daily_pct=round(volatility, 4),
        window_bars=window, reason=reason,
        thresholds={"crash_change_pct": t.crash_change_pct, "rally_change_pct": t.rally_change_pct,
                    "high_vol_daily_pct": t.high_vol_daily_pct, "low_vol_daily_pct": t.low_vol_daily_pct},
    )
