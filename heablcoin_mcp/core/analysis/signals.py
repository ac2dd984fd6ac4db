"""A small, explained set of signals voting into bullish / bearish / neutral.

Four voters, each +1 (bullish), -1 (bearish) or 0, with a reason:
- trend: fast EMA vs slow EMA, and close vs slow EMA; weighted up when ADX says the trend is strong;
- momentum: MACD histogram sign together with RSI above or below 50;
- mean reversion: RSI overbought / oversold and close outside the Bollinger bands (contrarian);
- structure: the smart-money structure trend (last break of a swing level).
Score = weighted mean of the votes (-1..1); |score| >= 0.25 leans bullish or bearish; confidence =
|score|. This describes the chart; it does not predict it and is not advice.
"""

from __future__ import annotations

from typing import Any, Literal

from heablcoin_mcp.core.analysis.reports import IndicatorSnapshot, SignalSummary, Vote

LEAN_THRESHOLD = 0.25


def vote(snapshot: IndicatorSnapshot, structure: dict[str, Any] | None) -> SignalSummary:
    votes = [_trend(snapshot), _momentum(snapshot), _mean_reversion(snapshot), _structure(structure)]
    total = sum(v.weight for v in votes)
    score = sum(v.vote * v.weight for v in votes) / total
    bias: Literal["bullish", "bearish", "neutral"] = (
        "bullish" if score >= LEAN_THRESHOLD else "bearish" if score <= -LEAN_THRESHOLD else "neutral")
    return SignalSummary(bias=bias, score=round(score, 3), confidence=round(abs(score), 3), votes=votes)


def _trend(s: IndicatorSnapshot) -> Vote:
    strong = s.adx.strength in ("strong", "very strong")
    weight = 1.5 if strong else 1.0
    above = s.close > s.ema.slow
    if s.ema.trend == "up" and above:
        return Vote(name="trend", vote=1, weight=weight,
                    reason=f"EMA{s.ema.fast_period} above EMA{s.ema.slow_period} and price above it"
                    + (f"; ADX {s.adx.adx:.0f} ({s.adx.strength})" if strong else ""))
    if s.ema.trend == "down" and not above:
        return Vote(name="trend", vote=-1, weight=weight,
                    reason=f"EMA{s.ema.fast_period} below EMA{s.ema.slow_period} and price below it"
                    + (f"; ADX {s.adx.adx:.0f} ({s.adx.strength})" if strong else ""))
    return Vote(name="trend", vote=0, weight=1.0, reason=f"EMAs {s.ema.trend}, no clear trend")


def _momentum(s: IndicatorSnapshot) -> Vote:
    if s.macd.histogram > 0 and s.rsi.value > 50:
        return Vote(name="momentum", vote=1, weight=1.0, reason=f"MACD histogram positive, RSI {s.rsi.value:.0f}")
    if s.macd.histogram < 0 and s.rsi.value < 50:
        return Vote(name="momentum", vote=-1, weight=1.0, reason=f"MACD histogram negative, RSI {s.rsi.value:.0f}")
    return Vote(name="momentum", vote=0, weight=1.0, reason="MACD and RSI disagree")


def _mean_reversion(s: IndicatorSnapshot) -> Vote:
    if s.rsi.state == "overbought" or s.bollinger.percent_b > 1:
        return Vote(name="mean_reversion", vote=-1, weight=0.75,
                    reason=f"stretched up: RSI {s.rsi.value:.0f}, %b {s.bollinger.percent_b:.2f}")
    if s.rsi.state == "oversold" or s.bollinger.percent_b < 0:
        return Vote(name="mean_reversion", vote=1, weight=0.75,
                    reason=f"stretched down: RSI {s.rsi.value:.0f}, %b {s.bollinger.percent_b:.2f}")
    return Vote(name="mean_reversion", vote=0, weight=0.75, reason="price inside the bands, RSI neutral")


def _structure(structure: dict[str, Any] | None) -> Vote:
    trend = (structure or {}).get("trend", "undetermined")
    if trend == "bullish":
        return Vote(name="structure", vote=1, weight=1.0, reason="last structure break was bullish")
    if trend == "bearish":
        return Vote(name="structure", vote=-1, weight=1.0, reason="last structure break was bearish")
    return Vote(name="structure", vote=0, weight=1.0, reason="no structure break yet")
