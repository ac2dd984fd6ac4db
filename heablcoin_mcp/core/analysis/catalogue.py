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
        return {"conversion": i.ichimoku_conversion_line(), "base": i.ichimoku_base_line(),
                "span_a": i.ichimoku_a(), "span_b": i.ichimoku_b()}

    def vwap(f: pd.DataFrame, window: int) -> dict[str, pd.Series]:
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
        "vwap": ({"window": 14}, vwap),
        "keltner": ({"window": 20, "window_atr": 10}, keltner),
        "donchian": ({"window": 20}, donchian),
    }


EXTRA_NAMES = ("ichimoku", "vwap", "keltner", "donchian")


def available() -> list[str]:
    names = list(CORE) + list(EXTRA_NAMES)
    if importlib.util.find_spec("talib") is not None:
        import talib

        names += [f.lower() for f in talib.get_functions() if f.lower() not in names]
    return names


def canonical(name: str) -> str:
    """Raises InvalidInput for an unknown indicator name."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in CORE or key in EXTRA_NAMES:
        return key
    if importlib.util.find_spec("talib") is not None:
        import talib

        if key.upper() in talib.get_functions():
            return key
    suggestions = [n for n in available() if n.startswith(key[:3])][:8] if key else []
    raise InvalidInput(f"unknown indicator {name!r}",
                       hint=(f"Close names: {', '.join(suggestions)}. " if suggestions else "")
                       + "Core: ema, rsi, macd, bollinger, adx, atr; extras: ichimoku, vwap, keltner, donchian; "
                       "and any TA-Lib function name (sma, stoch, cci, obv, mfi, willr, ...).")


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
        if not 0 <= number <= MAX_PERIOD:
            raise InvalidInput(f"{name}.{key} must be between 0 and {MAX_PERIOD}, got {value}")
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
