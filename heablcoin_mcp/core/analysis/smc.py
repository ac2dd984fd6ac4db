"""Smart-money features: swings, market structure (BOS / CHoCH), order blocks, liquidity pools and
fair value gaps. Our own vectorised code, strictly causal.

Causality: every item carries the bar at which it became known (``confirmed_bar``), and every
later change of state carries its own bar (``mitigated_bar``, ``swept_bar``, ``filled_bar``). All of
them are computed from bars up to that bar only. So running on ``candles[:k]`` and on
``candles[:k+1]`` reports the same items and states for every bar < k - swing_length.

- A swing high at bar j is a high strictly above the ``swing_length`` highs before it and at least
  as high as the ``swing_length`` highs after it; it is confirmed ``swing_length`` bars later.
  Swing lows mirror this.
- A break happens at the first close beyond a confirmed swing level after its confirmation. A break
  in the direction of the current structure is a BOS; against it (or the first break) a CHoCH.
- The order block of a bullish break is the last bearish candle between the broken swing and the
  break (the lowest candle if there is none); mitigated when price later trades back into it.
- A liquidity pool forms when a newly confirmed swing lies within ``tolerance_pct`` of an earlier
  unswept swing of the same side (equal highs / equal lows); swept when price trades through it.
- A fair value gap is the gap between candle i-2 and candle i (bullish: low[i] > high[i-2]); known
  at bar i; filled when price later trades through the whole gap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from heablcoin_mcp.core.analysis.candles import validate
from heablcoin_mcp.errors import InvalidInput


def smart_money_features(candles: pd.DataFrame, swing_length: int = 5, tolerance_pct: float = 0.1) -> dict[str, Any]:
    """All smart-money features of a candle frame (columns timestamp, open, high, low, close, volume).

    Raises:
        InvalidInput: invalid candles or swing_length outside 1..50.
    """
    if not 1 <= swing_length <= 50:
        raise InvalidInput(f"swing_length must be between 1 and 50, got {swing_length}")
    frame = validate(candles)
    ts, o, h, low, c = (frame[col].to_numpy() for col in ("timestamp", "open", "high", "low", "close"))
    highs, lows = swings(h, low, swing_length)
    events = structure_events(c, h, low, highs, lows, swing_length)
    return {
        "swing_length": swing_length,
        "confirmation_lag_bars": swing_length,
        "bars": len(frame),
        "swings": {"highs": [_swing(j, h[j], ts, swing_length) for j in highs],
                   "lows": [_swing(j, low[j], ts, swing_length) for j in lows]},
        "structure": _structure_summary(events, ts),
        "order_blocks": order_blocks(events, o, h, low, c, ts),
        "liquidity_pools": liquidity_pools(highs, lows, h, low, ts, swing_length, tolerance_pct),
        "fair_value_gaps": fair_value_gaps(h, low, ts),
    }


def swings(high: np.ndarray, low: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of swing highs and lows (each confirmed ``length`` bars after it)."""
    n = high.size
    if n < 2 * length + 1:
        return np.array([], dtype=int), np.array([], dtype=int)
    centre = np.arange(length, n - length)
    left_h = sliding_window_view(high[:-1], length)[: centre.size].max(axis=1)
    right_h = sliding_window_view(high[length + 1:], length)[: centre.size].max(axis=1)
    left_l = sliding_window_view(low[:-1], length)[: centre.size].min(axis=1)
    right_l = sliding_window_view(low[length + 1:], length)[: centre.size].min(axis=1)
    is_high = (high[centre] > left_h) & (high[centre] >= right_h)
    is_low = (low[centre] < left_l) & (low[centre] <= right_l)
    return centre[is_high], centre[is_low]


def _first_where(values: np.ndarray, op: np.ufunc, level: float, start: int, stop: int | None = None) -> int | None:
    """First bar in [start, stop) where ``op(value, level)`` holds; None if there is none.

    Works on the slice only, so each search costs what it scans, not the whole history."""
    window = values[start:stop]
    if window.size == 0:
        return None
    hit = op(window, level)
    index = int(np.argmax(hit))
    return start + index if hit[index] else None


def structure_events(close: np.ndarray, high: np.ndarray, low: np.ndarray, highs: np.ndarray, lows: np.ndarray,
                     length: int) -> list[dict[str, Any]]:
    """Breaks of confirmed swing levels, labelled BOS or CHoCH, in the order they happened."""
    breaks: list[tuple[int, str, int, float]] = []  # (bar, direction, swing index, level)
    for j in highs:
        bar = _first_where(close, np.greater, high[j], int(j) + length)
        if bar is not None:
            breaks.append((bar, "bullish", int(j), float(high[j])))
    for j in lows:
        bar = _first_where(close, np.less, low[j], int(j) + length)
        if bar is not None:
            breaks.append((bar, "bearish", int(j), float(low[j])))
    breaks.sort(key=lambda b: (b[0], b[1], -b[3] if b[1] == "bullish" else b[3]))
    events: list[dict[str, Any]] = []
    trend: str | None = None
    for bar, direction, swing, level in breaks:
        if events and events[-1]["bar"] == bar and events[-1]["direction"] == direction:
            continue  # several old levels broken by one candle: one event, at the most extreme level
        kind = "BOS" if trend == direction else "CHoCH"
        events.append({"type": kind, "direction": direction, "bar": bar, "level": level, "swing_bar": swing})
        trend = direction
    return events


def _structure_summary(events: list[dict[str, Any]], ts: np.ndarray) -> dict[str, Any]:
    stamped = [{**e, "timestamp": int(ts[e["bar"]])} for e in events]
    bos = [e for e in stamped if e["type"] == "BOS"]
    choch = [e for e in stamped if e["type"] == "CHoCH"]
    return {
        "trend": stamped[-1]["direction"] if stamped else "undetermined",
        "last_bos": bos[-1] if bos else None,
        "last_choch": choch[-1] if choch else None,
        "events": stamped,
    }


def order_blocks(events: list[dict[str, Any]], o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray,
                 ts: np.ndarray) -> list[dict[str, Any]]:
    blocks = []
    for event in events:
        start, end = event["swing_bar"], event["bar"]
        bullish = event["direction"] == "bullish"
        span = np.arange(start, end)
        opposite = span[c[span] < o[span]] if bullish else span[c[span] > o[span]]
        if opposite.size:
            bar = int(opposite[-1])
        else:
            bar = int(span[np.argmin(low[span])] if bullish else span[np.argmax(h[span])])
        top, bottom = float(h[bar]), float(low[bar])
        # price trades back into the zone: a low at or under its top (bullish), a high at or over its bottom
        mitigated = (_first_where(low, np.less_equal, top, end + 1) if bullish
                     else _first_where(h, np.greater_equal, bottom, end + 1))
        blocks.append({"type": event["direction"], "bar": bar, "timestamp": int(ts[bar]), "confirmed_bar": end,
                       "top": top, "bottom": bottom, "mitigated": mitigated is not None,
                       "mitigated_bar": mitigated})
    return blocks


def liquidity_pools(highs: np.ndarray, lows: np.ndarray, h: np.ndarray, low: np.ndarray, ts: np.ndarray,
                    length: int, tolerance_pct: float) -> list[dict[str, Any]]:
    pools: list[dict[str, Any]] = []
    for side, indices, prices in (("equal_highs", highs, h), ("equal_lows", lows, low)):
        above = side == "equal_highs"
        levels = prices[indices]
        for position in range(1, indices.size):
            j, confirmed = int(indices[position]), int(indices[position]) + length
            earlier = levels[:position]
            near = np.flatnonzero(np.abs(earlier - levels[position]) / earlier * 100 <= tolerance_pct)
            for candidate in near[::-1]:  # the most recent equal swing first
                first = int(indices[candidate])
                pair = (float(levels[candidate]), float(levels[position]))
                level = max(pair) if above else min(pair)
                through = np.greater if above else np.less
                if _first_where(prices, through, level, first + 1, confirmed + 1) is not None:
                    continue  # that earlier swing's liquidity was already taken
                swept = _first_where(prices, through, level, confirmed + 1)
                pools.append({"side": side, "level": level, "swing_bars": [first, j], "confirmed_bar": confirmed,
                              "timestamp": int(ts[confirmed]), "swept": swept is not None, "swept_bar": swept})
                break
    pools.sort(key=lambda p: p["confirmed_bar"])
    return pools


def fair_value_gaps(h: np.ndarray, low: np.ndarray, ts: np.ndarray) -> list[dict[str, Any]]:
    if h.size < 3:
        return []
    bars = np.arange(2, h.size)
    bullish = bars[low[2:] > h[:-2]]
    bearish = bars[h[2:] < low[:-2]]
    gaps = []
    for kind, found in (("bullish", bullish), ("bearish", bearish)):
        for i in found:
            top, bottom = (float(low[i]), float(h[i - 2])) if kind == "bullish" else (float(low[i - 2]), float(h[i]))
            filled = (_first_where(low, np.less_equal, bottom, int(i) + 1) if kind == "bullish"
                      else _first_where(h, np.greater_equal, top, int(i) + 1))
            gaps.append({"type": kind, "bar": int(i), "timestamp": int(ts[i]), "confirmed_bar": int(i),
                         "top": top, "bottom": bottom, "filled": filled is not None, "filled_bar": filled})
    gaps.sort(key=lambda g: g["bar"])
    return gaps


def _swing(j: int, price: float, ts: np.ndarray, length: int) -> dict[str, Any]:
    return {"bar": int(j), "timestamp": int(ts[j]), "price": float(price), "confirmed_bar": int(j) + length}
