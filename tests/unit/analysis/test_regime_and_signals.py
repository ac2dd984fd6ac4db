from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from heablcoin_mcp.core.analysis.candles import to_frame
from heablcoin_mcp.core.analysis.indicators import IndicatorEngine, IndicatorParams
from heablcoin_mcp.core.analysis.regime import detect_regime
from heablcoin_mcp.core.analysis.reports import RegimeThresholds
from heablcoin_mcp.core.analysis.signals import vote
from heablcoin_mcp.errors import InvalidInput

HOUR = 3600


def path(daily_returns: list[float], bars_per_day: int = 24, seed: int = 1) -> np.ndarray:
    """Hourly closes whose daily drift and noise are given per day."""
    rng = np.random.default_rng(seed)
    steps = []
    for drift, noise in daily_returns:
        steps += list(drift / bars_per_day + rng.standard_normal(bars_per_day) * noise / np.sqrt(bars_per_day))
    return 100 * np.exp(np.cumsum([0.0, *steps]))


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ([(0.0, 0.03)] * 7, "NORMAL"),
        ([(-0.04, 0.02)] * 7, "CRASH"),
        ([(0.03, 0.02)] * 7, "RALLY"),
        ([(0.0, 0.005)] * 7, "LOW_VOLATILITY"),
    ],
)
def test_regimes_follow_the_documented_rules(days: list[tuple[float, float]], expected: str) -> None:
    reading = detect_regime(path(days), HOUR, RegimeThresholds())
    assert reading.regime == expected, reading.reason
    assert reading.window_bars == 168


def test_wild_swings_without_net_change_are_high_volatility() -> None:
    zigzag = 100 * np.exp(np.cumsum([0.0] + [0.03, -0.03] * 84))
    reading = detect_regime(zigzag, HOUR, RegimeThresholds())
    assert reading.regime == "HIGH_VOLATILITY"
    assert abs(reading.change_pct) < 1 and reading.volatility_daily_pct > 6


def test_thresholds_come_from_configuration() -> None:
    closes = path([(-0.015, 0.01)] * 7)  # about -10 % over the week
    assert detect_regime(closes, HOUR, RegimeThresholds()).regime != "CRASH"
    assert detect_regime(closes, HOUR, RegimeThresholds(crash_change_pct=-8)).regime == "CRASH"


def test_the_reading_carries_the_numbers_that_decided_it() -> None:
    closes = path([(0.0, 0.03)] * 8)
    reading = detect_regime(closes, HOUR, RegimeThresholds())
    window = closes[-169:]
    assert reading.change_pct == pytest.approx((window[-1] / window[0] - 1) * 100, abs=1e-4)
    expected_vol = np.std(np.diff(np.log(window)), ddof=1) * np.sqrt(24) * 100
    assert reading.volatility_daily_pct == pytest.approx(expected_vol, abs=1e-4)


def test_short_history_is_refused() -> None:
    with pytest.raises(InvalidInput, match="needs 21 candles"):
        detect_regime(np.ones(10), 86400, RegimeThresholds())


def snapshot_of(closes: np.ndarray) -> object:
    rows = [[i * 3_600_000, c, c * 1.002, c * 0.998, c, 1.0] for i, c in enumerate(closes)]
    return IndicatorEngine().snapshot(to_frame(rows), IndicatorParams())[0]


def test_a_steady_rise_votes_bullish_and_explains_itself() -> None:
    summary = vote(snapshot_of(path([(0.02, 0.005)] * 15)), {"trend": "bullish"})  # type: ignore[arg-type]
    assert summary.bias == "bullish" and summary.confidence >= 0.5
    assert {v.name for v in summary.votes} == {"trend", "momentum", "mean_reversion", "structure"}
    assert all(v.reason for v in summary.votes)
    assert "not financial advice" in summary.disclaimer


def test_a_steady_fall_votes_bearish() -> None:
    summary = vote(snapshot_of(path([(-0.02, 0.005)] * 15)), {"trend": "bearish"})  # type: ignore[arg-type]
    assert summary.bias == "bearish" and summary.score < 0


def test_conflicting_evidence_is_neutral() -> None:
    summary = vote(snapshot_of(path([(0.0, 0.001)] * 15)), {"trend": "undetermined"})  # type: ignore[arg-type]
    assert summary.bias == "neutral"


def test_a_short_timeframe_is_judged_over_the_history_it_has() -> None:
    closes = 100 * np.exp(np.cumsum(np.r_[0.0, np.full(299, 0.0004)]))  # 300 five-minute bars, +12.7 %
    reading = detect_regime(closes, 300, RegimeThresholds())
    assert reading.window_bars == 299 and reading.regime == "RALLY"


@pytest.mark.parametrize("start", [3.0, 7.0, 1.1, 0.3, 123.45, 29.99, 0.07, 55555.5])
@pytest.mark.parametrize(("factor", "expected"), [("1.1", "RALLY"), ("0.85", "CRASH")])
def test_exact_boundary_changes_are_classified_as_the_rules_say(start: float, factor: str, expected: str) -> None:
    """+10 % and -15 % exactly, from quoted prices: binary floats misread a third of these."""
    end = float(Decimal(str(start)) * Decimal(factor))
    closes = np.array([start] * 168 + [end])
    assert detect_regime(closes, HOUR, RegimeThresholds()).regime == expected
