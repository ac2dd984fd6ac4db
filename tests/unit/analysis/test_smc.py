from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from heablcoin_mcp.core.analysis.candles import to_frame
from heablcoin_mcp.core.analysis.smc import smart_money_features, swings
from heablcoin_mcp.errors import InvalidInput
from tests.fakes.exchange import load_candles

STATE_BARS = ("mitigated_bar", "swept_bar", "filled_bar")
STATE_FLAGS = {"mitigated_bar": "mitigated", "swept_bar": "swept", "filled_bar": "filled"}


def known_before(features: dict[str, Any], cutoff: int) -> dict[str, list[dict[str, Any]]]:
    """Everything reported as known at a bar < cutoff, with later state changes hidden."""

    def clip(item: dict[str, Any]) -> dict[str, Any]:
        item = dict(item)
        for key in STATE_BARS:
            if key in item and (item[key] is None or item[key] >= cutoff):
                item[key] = None
                item[STATE_FLAGS[key]] = False
        return item

    return {
        "swing_highs": [s for s in features["swings"]["highs"] if s["confirmed_bar"] < cutoff],
        "swing_lows": [s for s in features["swings"]["lows"] if s["confirmed_bar"] < cutoff],
        "structure": [e for e in features["structure"]["events"] if e["bar"] < cutoff],
        "order_blocks": [clip(b) for b in features["order_blocks"] if b["confirmed_bar"] < cutoff],
        "liquidity": [clip(p) for p in features["liquidity_pools"] if p["confirmed_bar"] < cutoff],
        "gaps": [clip(g) for g in features["fair_value_gaps"] if g["confirmed_bar"] < cutoff],
    }


@pytest.mark.parametrize("fixture", ["eth_btc_5m.csv", "xrp_usdt_perp_5m.csv"])
@pytest.mark.parametrize("swing_length", [3, 5])
def test_adding_a_bar_never_changes_what_was_reported(fixture: str, swing_length: int) -> None:
    frame = to_frame(load_candles(fixture))
    rng = np.random.default_rng(11)
    cutoffs = sorted(set(rng.integers(60, len(frame) - 1, 25).tolist()) | {len(frame) - 1})
    for k in cutoffs:
        before = smart_money_features(frame.iloc[:k], swing_length)
        after = smart_money_features(frame.iloc[: k + 1], swing_length)
        limit = k - swing_length
        assert known_before(before, limit) == known_before(after, limit), f"bar {k}"
        # stronger still: nothing reported on the shorter history disappears or changes its past
        assert known_before(before, k) == known_before(after, k), f"bar {k}"


def test_the_full_history_agrees_with_every_prefix_on_real_data() -> None:
    frame = to_frame(load_candles("xrp_usdt_perp_5m.csv"))
    full = smart_money_features(frame, 5)
    for k in (200, 777, 1500):
        assert known_before(smart_money_features(frame.iloc[:k], 5), k) == known_before(full, k)


def candles_from_closes(closes: list[float], spread: float = 0.2) -> pd.DataFrame:
    rows = []
    previous = closes[0]
    for i, close in enumerate(closes):
        high, low = max(previous, close) + spread, min(previous, close) - spread
        rows.append([i * 60_000.0, previous, high, low, close, 1.0])
        previous = close
    return to_frame(rows)


def test_swings_are_local_extremes_confirmed_after_the_lag() -> None:
    high = np.array([1, 2, 3, 9, 3, 2, 1, 2, 3, 2, 1.0])
    low = high - 0.5
    highs, lows = swings(high, low, 2)
    assert highs.tolist() == [3, 8]
    assert lows.tolist() == [6]


def test_a_break_of_a_swing_high_after_a_downtrend_is_a_choch_then_bos() -> None:
    closes = [10, 11, 12, 11, 10, 9, 8, 9, 10, 11, 12.5, 13, 12, 11, 12, 13, 14, 14.5, 15]
    features = smart_money_features(candles_from_closes(closes), swing_length=2)
    events = features["structure"]["events"]
    assert [e["type"] for e in events][:2] == ["CHoCH", "BOS"]
    assert all(e["direction"] == "bullish" for e in events)
    first = events[0]
    assert first["level"] == pytest.approx(12.2)  # the swing high at bar 2 (close 12 + spread)
    assert closes[first["bar"]] > first["level"]
    assert features["structure"]["trend"] == "bullish"
    block = features["order_blocks"][0]
    assert block["type"] == "bullish" and block["bottom"] < block["top"]


def test_a_three_candle_gap_is_a_fair_value_gap_until_filled() -> None:
    rows = [[0, 10, 10.5, 9.5, 10.2, 1], [60_000, 10.2, 12.5, 10.1, 12.4, 1], [120_000, 12.4, 13.0, 11.0, 12.8, 1],
            [180_000, 12.8, 13.2, 12.5, 13.0, 1], [240_000, 13.0, 13.1, 10.4, 10.6, 1]]
    gaps = smart_money_features(to_frame(rows), swing_length=1)["fair_value_gaps"]
    bullish = [g for g in gaps if g["type"] == "bullish"]
    assert bullish[0]["bar"] == 2 and bullish[0]["bottom"] == 10.5 and bullish[0]["top"] == 11.0
    assert bullish[0]["filled"] is True and bullish[0]["filled_bar"] == 4


def test_equal_highs_form_a_liquidity_pool_that_is_swept_later() -> None:
    closes = [10, 11, 12, 11, 10, 11, 12.01, 11, 10, 11, 12, 13, 14]
    pools = smart_money_features(candles_from_closes(closes, spread=0.1), swing_length=2,
                                 tolerance_pct=0.5)["liquidity_pools"]
    highs = [p for p in pools if p["side"] == "equal_highs"]
    assert highs and highs[0]["swing_bars"] == [2, 6]
    assert highs[0]["swept"] is True and highs[0]["swept_bar"] > highs[0]["confirmed_bar"]


def test_bad_swing_length_is_refused() -> None:
    with pytest.raises(InvalidInput):
        smart_money_features(candles_from_closes([1.0, 2.0, 3.0]), swing_length=0)
