from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from heablcoin_mcp.core.analysis.candles import gap_count, to_frame
from heablcoin_mcp.core.analysis.indicators import (
    IndicatorEngine,
    IndicatorParams,
    TaBackend,
    TalibBackend,
    adx_strength,
    last_cross,
)
from heablcoin_mcp.errors import InvalidInput
from tests.fakes.exchange import load_candles


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return to_frame(load_candles("eth_btc_5m.csv"))


PARAMS = [IndicatorParams(), IndicatorParams(ema_fast=9, ema_slow=50, rsi=21, macd_fast=8, macd_slow=21,
                                             macd_signal=5, bb_period=30, bb_std=2.5, adx=10, atr=7)]


def relative_close(ours: np.ndarray, reference: np.ndarray, tolerance: float, skip: int) -> bool:
    a, b = ours[skip:], reference[skip:]
    return bool(np.all(np.abs(a - b) <= tolerance * np.maximum(np.abs(b), 1e-12)))


@pytest.mark.parametrize("params", PARAMS)
def test_engine_equals_direct_talib_calls_after_the_lookback(frame: pd.DataFrame, params: IndicatorParams) -> None:
    _, s = IndicatorEngine(TalibBackend()).snapshot(frame, params)
    h, low, c = (frame[k].to_numpy() for k in ("high", "low", "close"))
    macd, signal, hist = talib.MACD(c, params.macd_fast, params.macd_slow, params.macd_signal)
    upper, middle, lower = talib.BBANDS(c, params.bb_period, params.bb_std, params.bb_std, 0)
    pairs = [
        (s.ema_fast, talib.EMA(c, params.ema_fast)), (s.ema_slow, talib.EMA(c, params.ema_slow)),
        (s.rsi, talib.RSI(c, params.rsi)), (s.macd, macd), (s.macd_signal, signal), (s.macd_hist, hist),
        (s.bb_upper, upper), (s.bb_middle, middle), (s.bb_lower, lower),
        (s.adx, talib.ADX(h, low, c, params.adx)), (s.plus_di, talib.PLUS_DI(h, low, c, params.adx)),
        (s.minus_di, talib.MINUS_DI(h, low, c, params.adx)), (s.atr, talib.ATR(h, low, c, params.atr)),
    ]
    for ours, reference in pairs:
        assert relative_close(ours, reference, 1e-9, params.lookback)


def test_the_ta_fallback_converges_to_talib_once_settled(frame: pd.DataFrame) -> None:
    params = IndicatorParams()
    talib_snapshot, t = IndicatorEngine(TalibBackend()).snapshot(frame, params)
    ta_snapshot, f = IndicatorEngine(TaBackend()).snapshot(frame, params)
    assert ta_snapshot.backend == "ta" and talib_snapshot.backend == "talib"
    settled = 1000  # Wilder smoothing forgets its seed geometrically; by here the seeds no longer matter
    for name in ("ema_fast", "ema_slow", "rsi", "macd", "macd_signal", "bb_upper", "bb_lower", "adx", "atr"):
        assert relative_close(getattr(f, name), getattr(t, name), 1e-6, settled), name
    assert ta_snapshot.rsi.state == talib_snapshot.rsi.state
    assert ta_snapshot.adx.strength == talib_snapshot.adx.strength


def test_states_follow_the_documented_thresholds() -> None:
    rising = np.cumprod(np.full(300, 1.01)) * 100
    rows = [[i * 60_000, p, p * 1.001, p * 0.999, p, 1.0] for i, p in enumerate(rising)]
    snapshot, _ = IndicatorEngine().snapshot(to_frame(rows), IndicatorParams())
    assert snapshot.rsi.state == "overbought" and snapshot.ema.trend == "up"
    assert snapshot.adx.strength == "very strong" and snapshot.adx.direction == "bullish"
    falling = rows[::-1]
    falling = [[i * 60_000, *r[1:]] for i, r in enumerate(falling)]
    snapshot, _ = IndicatorEngine().snapshot(to_frame(falling), IndicatorParams())
    assert snapshot.rsi.state == "oversold" and snapshot.ema.trend == "down"
    assert snapshot.bollinger.percent_b < 0.5 and snapshot.atr.percent_of_price > 0


@pytest.mark.parametrize(("adx", "grade"), [(19.9, "absent"), (20, "weak"), (25, "weak"), (25.1, "strong"),
                                            (50, "strong"), (50.1, "very strong")])
def test_adx_strength_grades(adx: float, grade: str) -> None:
    assert adx_strength(adx) == grade


def test_last_cross_reports_direction_and_age() -> None:
    line = np.array([np.nan, 1, 2, 3, 2, 1, 0.5, 0.4])
    signal = np.array([np.nan, 2, 2.5, 2.5, 2.5, 2, 1, 0.2])
    assert last_cross(line, signal) == ("bullish", 0)
    assert last_cross(line[:-1], signal[:-1]) == ("bearish", 2)
    assert last_cross(np.ones(5), np.zeros(5)) == (None, None)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r[3].__setitem__(4, float("nan")), "NaN"),
        (lambda r: r[3].__setitem__(0, r[2][0]), "not strictly increasing"),
        (lambda r: r[3].__setitem__(2, r[3][3] * 0.5), "high below"),
        (lambda r: r[3].__setitem__(3, 10.2), "low above"),
        (lambda r: r[3].__setitem__(5, -1.0), "negative volume"),
        (lambda r: r[3].__setitem__(1, 0.0), "non-positive"),
    ],
)
def test_invalid_candles_are_rejected_with_the_bar(mutate: object, problem: str) -> None:
    rows = [[i * 60_000.0, 10.0, 11.0, 9.0, 10.5, 5.0] for i in range(6)]
    mutate(rows)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=problem) as caught:
        to_frame(rows)
    assert "bar 3 of 6" in caught.value.message


def test_too_little_history_asks_for_more(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="need more than") as caught:
        IndicatorEngine().snapshot(frame.iloc[:30], IndicatorParams())
    assert caught.value.hint is not None and "250" in caught.value.hint


@pytest.mark.parametrize("bad", [{"rsi": 1}, {"ema_fast": 30, "ema_slow": 10}, {"bogus": 3}, {"rsi": "x"},
                                 {"bb_std": 50}])
def test_bad_indicator_params_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        IndicatorParams.from_dict(bad)


def test_gaps_are_counted() -> None:
    rows = [[t * 60_000.0, 1, 1, 1, 1, 1] for t in (0, 1, 2, 5, 6, 9)]
    assert gap_count(to_frame(rows), 60_000) == 4
