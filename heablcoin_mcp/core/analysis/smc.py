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
from heablcoin_mcp.core.analysis.crossings import NONE, Crossings
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
    series = Series(Crossings(h), Crossings(low), Crossings(c))
    events = structure_events(series, h, low, highs, lows, swing_length)
    return {
        "swing_length": swing_length,
        "confirmation_lag_bars": swing_length,
        "bars": len(frame),
        "swings": {"highs": [_swing(j, h[j], ts, swing_length) for j in highs],
                   "lows": [_swing(j, low[j], ts, swing_length) for j in lows]},
        "structure": _structure_summary(events, ts),
        "order_blocks": order_blocks(series, events, o, h, low, c, ts),
        "liquidity_pools": liquidity_pools(series, highs, lows, h, low, ts, swing_length, tolerance_pct),
        "fair_value_gaps": fair_value_gaps(series, h, low, ts),
    }


class Series:
    """Crossing searches over the highs, lows and closes: every "first later bar beyond a level"
    below is one batched O(log n) search (core/analysis/crossings.py), not a scan to the end."""

    def __init__(self, high: Crossings, low: Crossings, close: Crossings) -> None:
        self.high, self.low, self.close = high, low, close


def _found(bars: np.ndarray) -> list[int | None]:
    return [None if b == NONE else int(b) for b in bars]


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


def structure_events(series: Series, high: np.ndarray, low: np.ndarray, highs: np.ndarray, lows: np.ndarray,
                     length: int) -> list[dict[str, Any]]:
    """Breaks of confirmed swing levels, labelled BOS or CHoCH, in the order they happened."""
    breaks: list[tuple[int, str, int, float]] = []  # (bar, direction, swing index, level)
    for direction, op, indices, prices in (("bullish", ">", highs, high), ("bearish", "<", lows, low)):
        for j, bar in zip(indices, _found(series.close.first(op, prices[indices], indices + length)), strict=True):
            if bar is not None:
                breaks.append((bar, direction, int(j), float(prices[j])))
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


def order_blocks(series: Series, events: list[dict[str, Any]], o: np.ndarray, h: np.ndarray, low: np.ndarray,
                 c: np.ndarray, ts: np.ndarray) -> list[dict[str, Any]]:
    blocks = []
    bars = np.arange(c.size)
    # the last bearish (bullish) candle at or before each bar: an event's block is one look-up
    last_down = np.maximum.accumulate(np.where(c < o, bars, -1))
    last_up = np.maximum.accumulate(np.where(c > o, bars, -1))
    for event in events:
        start, end = event["swing_bar"], event["bar"]
        bullish = event["direction"] == "bullish"
        bar = int((last_down if bullish else last_up)[end - 1])
        if bar < start:  # no opposite candle since the swing: the most extreme one (rare, short spans)
            bar = start + int(np.argmin(low[start:end]) if bullish else np.argmax(h[start:end]))
        blocks.append({"type": event["direction"], "bar": bar, "timestamp": int(ts[bar]), "confirmed_bar": end,
                       "top": float(h[bar]), "bottom": float(low[bar])})
    # price trades back into the zone: a low at or under its top (bullish), a high at or over its bottom
    for kind, crossings, op, edge in (("bullish", series.low, "<=", "top"), ("bearish", series.high, ">=", "bottom")):
        mine = [b for b in blocks if b["type"] == kind]
        found = _found(crossings.first(op, np.array([b[edge] for b in mine]),
                                       np.array([b["confirmed_bar"] + 1 for b in mine], dtype=np.int64)))
        for block, mitigated in zip(mine, found, strict=True):
            block.update(mitigated=mitigated is not None, mitigated_bar=mitigated)
    return blocks


def liquidity_pools(series: Series, highs: np.ndarray, lows: np.ndarray, h: np.ndarray, low: np.ndarray,
                    ts: np.ndarray, length: int, tolerance_pct: float) -> list[dict[str, Any]]:
    pools: list[dict[str, Any]] = []
    for side, indices, prices, crossings in (("equal_highs", highs, h, series.high), ("equal_lows", lows, low,
                                                                                        series.low)):
        above = side == "equal_highs"
        newer, older, level = _equal_pairs(prices[indices], tolerance_pct, above)
        firsts, confirmed = indices[older], indices[newer] + length
        # an earlier swing whose liquidity was taken before this one confirmed cannot pair with it
        free = ~crossings.crosses_between(">" if above else "<", level, firsts + 1, confirmed + 1)
        newer, older, level, firsts, confirmed = (a[free] for a in (newer, older, level, firsts, confirmed))
        last = np.r_[newer[1:] != newer[:-1], True] if newer.size else np.zeros(0, dtype=bool)
        newer, level, firsts, confirmed = (a[last] for a in (newer, level, firsts, confirmed))  # most recent
        swept = _found(crossings.first(">" if above else "<", level, confirmed + 1))
        pools += [{"side": side, "level": float(lv), "swing_bars": [int(f), int(indices[n])],
                   "confirmed_bar": int(c), "timestamp": int(ts[c]), "swept": bar is not None, "swept_bar": bar}
                  for n, lv, f, c, bar in zip(newer, level, firsts, confirmed, swept, strict=True)]
    pools.sort(key=lambda p: p["confirmed_bar"])
    return pools


def _equal_pairs(levels: np.ndarray, tolerance_pct: float, above: bool) -> tuple[np.ndarray, ...]:
    """Every (newer swing, older swing) whose levels are equal within the tolerance
    (|older - newer| / older <= tolerance), sorted by newer then older, with the pair's level (the
    higher of two highs, the lower of two lows). Found by level with a sorted array: the candidates
    of each swing are one searchsorted window, not a comparison with every earlier swing."""
    by_level = np.argsort(levels, kind="stable")
    ranked = levels[by_level]
    t = tolerance_pct / 100
    # |e - x| / e <= t  means  x / (1 + t) <= e <= x / (1 - t); widened a hair, then checked exactly
    begin = np.searchsorted(ranked, levels / (1 + t) * (1 - 1e-12), "left")
    end = np.searchsorted(ranked, levels / max(1 - t, 1e-12) * (1 + 1e-12), "right")
    counts = end - begin
    newer = np.repeat(np.arange(levels.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    older = by_level[np.repeat(begin, counts) + offsets]
    keep = older < newer
    newer, older = newer[keep], older[keep]
    keep = np.abs(levels[older] - levels[newer]) / levels[older] * 100 <= tolerance_pct
    newer, older = newer[keep], older[keep]
    order = np.lexsort((older, newer))
    newer, older = newer[order], older[order]
    level = np.maximum(levels[older], levels[newer]) if above else np.minimum(levels[older], levels[newer])
    return newer, older, level


def fair_value_gaps(series: Series, h: np.ndarray, low: np.ndarray, ts: np.ndarray) -> list[dict[str, Any]]:
    if h.size < 3:
        return []
    bars = np.arange(2, h.size)
    bullish = bars[low[2:] > h[:-2]]
    bearish = bars[h[2:] < low[:-2]]
    gaps = []
    for kind, found in (("bullish", bullish), ("bearish", bearish)):
        tops, bottoms = (low[found], h[found - 2]) if kind == "bullish" else (low[found - 2], h[found])
        # filled when price trades through the whole gap: a low at or under its bottom (bullish)
        filled = _found(series.low.first("<=", bottoms, found + 1) if kind == "bullish"
                        else series.high.first(">=", tops, found + 1))
        for i, top, bottom, bar in zip(found, tops, bottoms, filled, strict=True):
            gaps.append({"type": kind, "bar": int(i), "timestamp": int(ts[i]), "confirmed_bar": int(i),
                         "top": float(top), "bottom": float(bottom), "filled": bar is not None, "filled_bar": bar})
    gaps.sort(key=lambda g: g["bar"])
    return gaps


def _swing(j: int, price: float, ts: np.ndarray, length: int) -> dict[str, Any]:
    return {"bar": int(j), "timestamp": int(ts[j]), "price": float(price), "confirmed_bar": int(j) + length}
