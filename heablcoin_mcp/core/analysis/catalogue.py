"""Indicators by name for `compute_indicators`: our six core indicators, every TA-Lib function
(SMA, STOCH, CCI, OBV, MFI, WILLR, ...), and `ta` extras TA-Lib lacks (Ichimoku, VWAP, Keltner,
Donchian)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from heablcoin_mcp.errors import InvalidInput

CORE = ("ema", "rsi", "macd", "bollinger", "adx", "atr")
ALIASES = {"bbands": "bollinger", "bb": "bollinger"}
MAX_PERIOD = 1000


def _ta_extras() -> dict[str, tuple[dict[str, int], Callable[..., dict[str, pd.Series]]]]:
    import ta

    def ichimoku(f: pd.DataFrame, window1: int, window2: int, window3: int) -> dict[str, pd.Series]:
        i = ta.trend.IchimokuIndicator(f["high"], f["low"], window1=window1, window2=window2, window3=window3)
        span_b = i.ichimoku_b().copy()
        span_b.iloc[:window3 - 1] = float("nan")  # `ta` fills the first bars from a partial window
        return {"conversion": i.ichimoku_conversion_line(), "base": i.ichimoku_base_line(),
                "span_a": i.ichimoku_a(), "span_b": span_b}

    def rolling_vwap(f: pd.DataFrame, window: int) -> dict[str, pd.Series]:
        v = ta.volume.VolumeWeightedAveragePrice(f["high"], f["low"], f["close"], f["volume"], window=window)
        return {"vwap": v.volume_weighted_average_price()}

    def keltner(f: pd.DataFrame, window: int, window_atr: int) -> dict[str, pd.Series]:
        k = ta.volatility.KeltnerChannel(f["high"], f["low"], f["close"], window=window, window_atr=window_atr,
                                         original_version=False)
        return {"upper": k.keltner_channel_hband(), "middle": k.keltner_channel_mband(),
                "lower": k.keltner_channel_lband()}

    def donchian(f: pd.DataFrame, window: int) -> dict[str, pd.Series]:
        d = ta.volatility.DonchianChannel(f["high"], f["low"], f["close"], window=window)
        return {"upper": d.donchian_channel_hband(), "middle": d.donchian_channel_mband(),
                "lower": d.donchian_channel_lband()}

    return {
        "ichimoku": ({"window1": 9, "window2": 26, "window3": 52}, ichimoku),
        "rolling_vwap": ({"window": 14}, rolling_vwap),
        "keltner": ({"window": 20, "window_atr": 10}, keltner),
        "donchian": ({"window": 20}, donchian),
    }


EXTRA_NAMES = ("ichimoku", "rolling_vwap", "keltner", "donchian")
# Each core indicator's parameters, by the names a caller may use for them (TA-Lib's included).
CORE_PARAMS = {
    "ema": {"fast": "ema_fast", "slow": "ema_slow"},
    "rsi": {"period": "rsi", "timeperiod": "rsi"},
    "macd": {"fast": "macd_fast", "fastperiod": "macd_fast", "slow": "macd_slow", "slowperiod": "macd_slow",
             "signal": "macd_signal", "signalperiod": "macd_signal"},
    "bollinger": {"period": "bb_period", "timeperiod": "bb_period", "std": "bb_std"},
    "adx": {"period": "adx", "timeperiod": "adx"},
    "atr": {"period": "atr", "timeperiod": "atr"},
}
# Inputs compute_indicators cannot supply: refused with why, never a crash.
UNSUPPORTED = {"mavp": "MAVP needs a per-bar series of periods as a second input"}


def core_params(name: str, given: Any) -> dict[str, Any]:
    """A core indicator's params (``{"fast": 20}``, or a bare number for one-period ones) as
    IndicatorParams fields. Raises InvalidInput for anything it would otherwise ignore."""
    names = CORE_PARAMS[name]
    periods = sorted({field for field in names.values() if field != "bb_std"})
    if not isinstance(given, dict):
        if len(periods) == 1 and not isinstance(given, bool | list):
            return {periods[0]: given}
        raise InvalidInput(f"params for {name} must be an object like {{{', '.join(repr(k) for k in names)}}}")
    unknown = sorted(set(given) - set(names))
    if name == "ema" and {"timeperiod", "period"} & set(unknown):
        raise InvalidInput("the core ema is a fast/slow pair: give {'fast': 20, 'slow': 50}",
                           hint="For one moving average of N bars ask for 'sma' or 'kama' with {'timeperiod': N}, "
                                "or set both fast and slow.")
    if unknown:
        raise InvalidInput(f"unknown parameter(s) for {name}: {', '.join(unknown)}",
                           hint=f"{name} takes: {', '.join(names)}.")
    return {names[key]: value for key, value in given.items()}


def available() -> list[str]:
    names = list(CORE) + list(EXTRA_NAMES)
    if importlib.util.find_spec("talib") is not None:
        import talib

        names += [f.lower() for f in talib.get_functions() if f.lower() not in names]
    return names


def canonical(name: str) -> str:
    """Raises InvalidInput for an unknown indicator name, or one this tool cannot feed."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in CORE or key in EXTRA_NAMES:
        return key
    if key in UNSUPPORTED:
        raise InvalidInput(f"{key} is not available here: {UNSUPPORTED[key]}",
                           hint="Use a moving average with a fixed timeperiod (sma, ema, kama, t3).")
    if importlib.util.find_spec("talib") is not None:
        import talib

        if key.upper() in talib.get_functions():
            return key
    suggestions = [n for n in available() if n.startswith(key[:3])][:8] if key else []
    raise InvalidInput(f"unknown indicator {name!r}",
                       hint=(f"Close names: {', '.join(suggestions)}. " if suggestions else "")
                       + "Core: ema, rsi, macd, bollinger, adx, atr; extras: ichimoku, rolling_vwap, keltner, "
                       "donchian; and any TA-Lib function name (sma, stoch, cci, obv, mfi, willr, vwap, ...).")


def _checked(name: str, defaults: dict[str, Any], given: Any) -> dict[str, Any]:
    if given is None:
        return dict(defaults)
    if not isinstance(given, dict):
        raise InvalidInput(f"params for {name} must be an object like {defaults}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InvalidInput(f"unknown parameter(s) for {name}: {', '.join(unknown)}",
                           hint=f"{name} takes: {', '.join(f'{k} (default {v})' for k, v in defaults.items())}.")
    merged = dict(defaults)
    for key, value in given.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"{name}.{key} must be a number, got {value!r}") from None
        low = 1 if "period" in key or "window" in key else 0  # a window of no bars means nothing
        if not low <= number <= MAX_PERIOD:
            raise InvalidInput(f"{name}.{key} must be between {low} and {MAX_PERIOD}, got {value}")
        merged[key] = int(number) if isinstance(defaults[key], int) else number
    return merged


def compute(frame: pd.DataFrame, name: str, params: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One extra or TA-Lib indicator: (parameters used, output name -> full series)."""
    if name in EXTRA_NAMES:
        defaults, fn = _ta_extras()[name]
        used = _checked(name, defaults, params)
        return used, {k: v.to_numpy(dtype=np.float64) for k, v in fn(frame, **used).items()}
    from talib import abstract

    function = abstract.Function(name.upper())
    used = _checked(name, dict(function.parameters), params)
    function.set_parameters(used)
    outputs = function({c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")})
    arrays = outputs if isinstance(outputs, list) else [outputs]
    return used, {out: np.asarray(arr, dtype=np.float64) for out, arr in zip(function.output_names, arrays,
                                                                           strict=True)}
