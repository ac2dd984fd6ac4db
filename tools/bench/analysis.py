"""Analysis benchmarks (ratios against references measured in the same run).

- indicator snapshot (validation + six indicators + states) vs the same six TA-Lib calls made
  directly, and vs the `ta` package computing them, on 10k and 1M candles;
- smart-money features on 10k candles, vs the six direct TA-Lib calls on the same candles, and on
  100k candles vs 10k (growth);
- market_analysis end to end from a warm cache through an in-process MCP client, vs a minimal
  MCPServer's one-line tool.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import talib

from heablcoin_mcp.core.analysis.candles import to_frame
from heablcoin_mcp.core.analysis.indicators import IndicatorEngine, IndicatorParams, TaBackend, TalibBackend
from heablcoin_mcp.core.analysis.smc import smart_money_features


def synthetic(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.standard_normal(n) * 0.002))
    open_ = np.r_[close[0], close[:-1]]
    wiggle = np.abs(rng.standard_normal((2, n))) * 0.001
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    ts = np.arange(n, dtype=np.float64) * 60_000
    return to_frame(np.column_stack([ts, open_, high, low, close, rng.uniform(1, 10, n)]).tolist()) \
        if n <= 20_000 else pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low,
                                          "close": close, "volume": rng.uniform(1, 10, n)})


def direct_talib(frame: pd.DataFrame, p: IndicatorParams) -> None:
    h, low, c = (frame[k].to_numpy() for k in ("high", "low", "close"))
    talib.EMA(c, p.ema_fast), talib.EMA(c, p.ema_slow), talib.RSI(c, p.rsi)
    talib.MACD(c, p.macd_fast, p.macd_slow, p.macd_signal), talib.BBANDS(c, p.bb_period, p.bb_std, p.bb_std, 0)
    talib.ADX(h, low, c, p.adx), talib.PLUS_DI(h, low, c, p.adx), talib.MINUS_DI(h, low, c, p.adx)
    talib.ATR(h, low, c, p.atr)


def best_of(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return min(samples)


def indicator_rows(runs: int) -> list[tuple[str, float, str, float]]:
    params = IndicatorParams()
    talib_engine, ta_engine = IndicatorEngine(TalibBackend()), IndicatorEngine(TaBackend())
    rows = []
    for n in (10_000, 1_000_000):
        frame = synthetic(n)
        repeat = runs if n <= 10_000 else max(1, runs // 3)
        ours = best_of(lambda frame=frame: talib_engine.snapshot(frame, params), repeat)
        direct = best_of(lambda frame=frame: direct_talib(frame, params), repeat)
        ta_time = best_of(lambda frame=frame: ta_engine.snapshot(frame, params), max(1, repeat // 2))
        rows.append((f"indicator snapshot, {n:,} candles", ours, "the same TA-Lib calls", direct))
        rows.append((f"`ta` package snapshot, {n:,} candles", ta_time, "our TA-Lib snapshot", ours))
    frame = synthetic(10_000)
    smc = best_of(lambda: smart_money_features(frame, 5), runs)
    rows.append(("smart-money features, 10,000 candles", smc, "the same TA-Lib calls",
                 best_of(lambda: direct_talib(frame, params), runs)))
    big = synthetic(100_000)  # growth: 10x the bars should cost about 10x (linear), not more
    rows.append(("smart-money features, 100,000 candles", best_of(lambda: smart_money_features(big, 5),
                                                                   max(1, runs // 2)),
                 "smart-money features, 10,000", smc))
    return rows + smc_reference_rows(runs)


def smartmoneyconcepts_features(frame: pd.DataFrame, swing_length: int) -> None:
    """The same features with the `smartmoneyconcepts` package: swings, breaks of structure and
    changes of character, order blocks, fair-value gaps and liquidity pools."""
    from smartmoneyconcepts import smc

    ohlc = frame[["open", "high", "low", "close", "volume"]].reset_index(drop=True)
    swings = smc.swing_highs_lows(ohlc, swing_length=swing_length)
    smc.fvg(ohlc)
    smc.bos_choch(ohlc, swings)
    smc.ob(ohlc, swings)
    smc.liquidity(ohlc, swings)


def smc_reference_rows(runs: int) -> list[tuple[str, float, str, float]]:
    """Ours against `smartmoneyconcepts` (the `bench` extra) on the same candles and swing length."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a banner on import
            import smartmoneyconcepts  # noqa: F401
    except ImportError:
        return []
    rows = []
    for n in (10_000, 100_000):
        frame = synthetic(n)
        repeat = runs if n <= 10_000 else 1
        ours = best_of(lambda frame=frame: smart_money_features(frame, 5), repeat)
        smartmoneyconcepts_features(frame, 5)  # its numba functions compile on the first call
        reference = best_of(lambda frame=frame: smartmoneyconcepts_features(frame, 5), repeat)
        rows.append((f"smart-money features, {n:,} candles", ours, "smartmoneyconcepts", reference))
    return rows


async def analysis_rows(runs: int) -> list[tuple[str, float, str, float]]:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    from heablcoin_mcp.app import App
    from heablcoin_mcp.config import Settings
    from heablcoin_mcp.server import build_server
    from tests.fakes.clock import ManualClock

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(_env_file=None, home=Path(home), exchange="sim")  # type: ignore[call-arg]
        app = App(settings, clock=ManualClock())  # a still clock: the cache stays warm
        reference = MCPServer("minimal")
        reference.add_tool(lambda: "pong", name="ping")
        async with Client(build_server(app)) as client, Client(reference) as ref_client:
            arguments = {"symbol": "BTC/USDT", "timeframe": "4h"}
            await client.call_tool("market_analysis", arguments)  # fill the caches
            samples, ref = [], []
            for _ in range(runs * 10):
                started = time.perf_counter()
                await client.call_tool("market_analysis", arguments)
                samples.append(time.perf_counter() - started)
                started = time.perf_counter()
                await ref_client.call_tool("ping", {})
                ref.append(time.perf_counter() - started)
            cold_app = App(settings, clock=ManualClock())
            async with Client(build_server(cold_app)) as cold:
                started = time.perf_counter()
                await cold.call_tool("market_analysis", arguments)
                cold_time = time.perf_counter() - started
    ping = statistics.median(ref)
    return [("market_analysis, warm cache (in-process)", statistics.median(samples), "minimal ping tool", ping),
            ("market_analysis, cold (first call)", cold_time, "minimal ping tool", ping)]
