"""The market-analysis report: indicators, signals, smart-money structure, regime, and a short
plain-language summary a model can relay."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from heablcoin_mcp.core.analysis.candles import gap_count
from heablcoin_mcp.core.analysis.indicators import IndicatorEngine, IndicatorParams
from heablcoin_mcp.core.analysis.regime import detect_regime
from heablcoin_mcp.core.analysis.reports import (
    IndicatorSnapshot,
    MarketAnalysis,
    RegimeReading,
    RegimeThresholds,
    SignalSummary,
    StructureSummary,
)
from heablcoin_mcp.core.analysis.signals import vote
from heablcoin_mcp.core.analysis.smc import smart_money_features

NEAREST = 3


def build_analysis(stamp: dict[str, Any], frame: pd.DataFrame, timeframe_seconds: int, engine: IndicatorEngine,
                   thresholds: RegimeThresholds, swing_length: int, change: float | None) -> MarketAnalysis:
    """``change``: the rolling 24h change to now (the ticker's), the same on every timeframe."""
    snapshot, _ = engine.snapshot(frame, IndicatorParams())
    features = smart_money_features(frame, swing_length=swing_length)
    close = frame["close"].to_numpy()
    structure = summarise_structure(features, float(close[-1]), frame["timestamp"].to_numpy())
    signals = vote(snapshot, features["structure"])
    regime = detect_regime(close, timeframe_seconds, thresholds)
    return MarketAnalysis(
        **stamp, last=float(close[-1]), change_24h_pct=change,
        gaps=gap_count(frame, timeframe_seconds * 1000), indicators=snapshot, signals=signals,
        structure=structure, regime=regime,
        summary=summary_lines(stamp, float(close[-1]), change, snapshot, structure, regime, signals),
    )


def summarise_structure(features: dict[str, Any], price: float, ts: np.ndarray) -> StructureSummary:
    def nearest(items: list[dict[str, Any]], level: Any) -> list[dict[str, Any]]:
        return sorted(items, key=lambda item: abs(level(item) - price))[:NEAREST]

    structure = features["structure"]
    blocks = [b for b in features["order_blocks"] if not b["mitigated"]]
    pools = [p for p in features["liquidity_pools"] if not p["swept"]]
    gaps = [g for g in features["fair_value_gaps"] if not g["filled"]]
    last = len(ts) - 1

    def aged(item: dict[str, Any], bar_key: str = "bar") -> dict[str, Any]:
        return {**item, "bars_ago": last - item[bar_key]}

    return StructureSummary(
        trend=structure["trend"], confirmation_lag_bars=features["confirmation_lag_bars"],
        last_bos=aged(structure["last_bos"]) if structure["last_bos"] else None,
        last_choch=aged(structure["last_choch"]) if structure["last_choch"] else None,
        order_blocks=[aged(b) for b in nearest(blocks, lambda b: (b["top"] + b["bottom"]) / 2)],
        liquidity_pools=[aged(p, "confirmed_bar") for p in nearest(pools, lambda p: p["level"])],
        fair_value_gaps=[aged(g) for g in nearest(gaps, lambda g: (g["top"] + g["bottom"]) / 2)],
        counts={"swing_highs": len(features["swings"]["highs"]), "swing_lows": len(features["swings"]["lows"]),
                "structure_breaks": len(structure["events"]), "unmitigated_order_blocks": len(blocks),
                "unswept_liquidity_pools": len(pools), "unfilled_fair_value_gaps": len(gaps)},
    )


def _price(value: float) -> str:
    if value >= 1000:
        return f"{value:,.2f}"
    return f"{value:.6g}"


def summary_lines(stamp: dict[str, Any], last: float, change: float | None, s: IndicatorSnapshot,
                  structure: StructureSummary, regime: RegimeReading, signals: SignalSummary) -> list[str]:
    source = f"{stamp['exchange']}{' (simulated data)' if stamp['simulated'] else ''}"
    day = f", {change:+.2f}% over 24h" if change is not None else ""
    lines = [f"{stamp['symbol']} {stamp['timeframe']} on {source}: last {_price(last)}{day}."]
    lines.append(f"Trend: EMA{s.ema.fast_period}/EMA{s.ema.slow_period} {s.ema.trend}; ADX {s.adx.adx:.0f} "
                 f"({s.adx.strength}, {s.adx.direction}).")
    cross = (f"; MACD {s.macd.last_cross} cross {s.macd.cross_bars_ago} bars ago" if s.macd.last_cross else "")
    lines.append(f"Momentum: RSI {s.rsi.value:.0f} ({s.rsi.state}){cross}; "
                 f"Bollinger %b {s.bollinger.percent_b:.2f}, ATR {s.atr.percent_of_price:.2f}% of price.")
    if structure.trend != "undetermined":
        breaks = [e for e in (structure.last_bos, structure.last_choch) if e]
        latest = min(breaks, key=lambda e: e["bars_ago"])
        parts = [f"Structure: {structure.trend} since a {latest['type']} through {_price(latest['level'])} "
                 f"{latest['bars_ago']} bars ago"]
        if structure.order_blocks:
            block = structure.order_blocks[0]
            parts.append(f"nearest unmitigated {block['type']} order block {_price(block['bottom'])}–"
                         f"{_price(block['top'])}")
        lines.append(", ".join(parts) + ".")
    lines.append(f"Regime: {regime.regime} — {regime.reason}.")
    lines.append(f"Signals lean {signals.bias} (confidence {signals.confidence:.2f}). {signals.disclaimer}")
    return lines
