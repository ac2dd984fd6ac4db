from __future__ import annotations

import numpy as np
import pytest
import talib

from heablcoin_mcp.core.analysis.candles import to_frame
from heablcoin_mcp.core.analysis.service import AnalysisService
from heablcoin_mcp.core.market.cache import TTLCache
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.market.sim import SimMarketData
from heablcoin_mcp.errors import InvalidInput
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(clock: ManualClock) -> AnalysisService:
    market = MarketService(SimMarketData(clock), TTLCache(clock), clock)
    return AnalysisService(market, TTLCache(clock))


async def test_catalogue_indicators_match_talib_on_the_same_candles(service: AnalysisService) -> None:
    report = await service.indicators("ETH/USDT", "1h", ["sma", "stoch", "rsi"],
                                      {"sma": {"timeperiod": 50}, "rsi": 21}, history=300, series=5)
    frame = to_frame(await service.market.candles("ETH/USDT", "1h", 300))
    close, high, low = frame["close"].to_numpy(), frame["high"].to_numpy(), frame["low"].to_numpy()
    assert report.indicators["sma"].values["real"] == pytest.approx(talib.SMA(close, 50)[-1], rel=1e-12)
    slowk, slowd = talib.STOCH(high, low, close, 5, 3, 0, 3, 0)
    assert report.indicators["stoch"].values == pytest.approx({"slowk": slowk[-1], "slowd": slowd[-1]}, rel=1e-12)
    assert report.indicators["rsi"].values["value"] == pytest.approx(talib.RSI(close, 21)[-1], rel=1e-12)
    assert report.indicators["rsi"].params == {"period": 21}
    series = report.indicators["sma"].series
    assert series is not None and series["real"] == pytest.approx(talib.SMA(close, 50)[-5:].tolist(), rel=1e-12)
    assert (report.exchange, report.symbol, report.timeframe, report.simulated) == ("sim", "ETH/USDT", "1h", True)
    assert report.settled is True and report.backend == "talib"


@pytest.mark.parametrize(
    ("names", "params", "message"),
    [
        (["rsii"], None, "unknown indicator 'rsii'"),
        ([], None, "at least one indicator"),
        (["rsi"], {"sma": {"timeperiod": 5}}, "not requested"),
        (["sma"], {"sma": {"period": 5}}, "unknown parameter"),
        (["sma"], {"sma": {"timeperiod": "fast"}}, "must be a number"),
        (["sma"], {"sma": {"timeperiod": 10**6}}, "between 1 and 1000"),
        (["keltner"], {"keltner": {"window_atr": 0}}, "between 1 and 1000"),
        (["donchian"], {"donchian": {"window": 0}}, "between 1 and 1000"),
        (["mavp"], None, "periods"),
        (["ema"], {"ema": {"timeperiod": 50}}, "fast/slow pair"),
        (["macd"], {"macd": {"fast": 5, "slowest": 9}}, "unknown parameter"),
        (["rsi"], {"rsi": {"window": 9}}, "unknown parameter"),
    ],
)
async def test_bad_indicator_requests_are_explained(
    service: AnalysisService, names: list[str], params: dict[str, object] | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await service.indicators("BTC/USDT", "1h", names, params)


async def test_results_are_cached_by_candle_data_and_params(service: AnalysisService, clock: ManualClock) -> None:
    first = await service.analyse("BTC/USDT", "1h")
    assert await service.analyse("BTC/USDT", "1h") is first
    clock.advance(45)  # the open candle moves: new data, new analysis
    moved = await service.analyse("BTC/USDT", "1h")
    assert moved is not first and moved.last != first.last
    assert await service.analyse("BTC/USDT", "1h", swing_length=3) is not moved


async def test_the_analysis_report_is_complete_and_compact(service: AnalysisService) -> None:
    report = await service.analyse("SOL/USDT", "4h")
    assert 3 <= len(report.summary) <= 6
    assert report.summary[0].startswith("SOL/USDT 4h on sim (simulated data)")
    assert report.regime.regime in {"NORMAL", "HIGH_VOLATILITY", "LOW_VOLATILITY", "CRASH", "RALLY"}
    assert len(report.structure.order_blocks) <= 3 and len(report.structure.fair_value_gaps) <= 3
    assert all(not b["mitigated"] for b in report.structure.order_blocks)
    assert len(report.model_dump_json()) < 12_000


async def test_scan_sorts_and_reports_bad_symbols_in_their_row(service: AnalysisService) -> None:
    report = await service.scan(["BTC/USDT", "ETH/USDT", "NOPE/USDT", "SOL/USDT"], "1h", "rsi")
    assert [r.symbol for r in report.rows][-1] == "NOPE/USDT"
    assert report.rows[-1].error is not None and report.rows[-1].error.startswith("not_found")
    rsis = [r.rsi for r in report.rows if r.error is None]
    assert rsis == sorted(rsis, reverse=True) and len(rsis) == 3


@pytest.mark.parametrize(("symbols", "sort_by", "message"), [
    ([], "change", "at least one symbol"), (["BTC/USDT"] * 31, "change", "at most 30"),
    (["BTC/USDT"], "vibes", "unknown sort_by")])
async def test_bad_scans_are_refused(service: AnalysisService, symbols: list[str], sort_by: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await service.scan(symbols, "1h", sort_by)


async def test_every_core_parameter_is_honoured_whatever_the_alias(service: AnalysisService) -> None:
    """EMA 50 / 200, MACD 5-35-5, Bollinger 10 x 3, RSI 21, ATR 7, ADX 9: the result says so and
    the values are TA-Lib's for those periods (not the defaults)."""
    report = await service.indicators(
        "BTC/USDT", "1h", ["ema", "macd", "bbands", "rsi", "atr", "adx"],
        {"ema": {"fast": 50, "slow": 200}, "macd": {"fastperiod": 5, "slow": 35, "signal": 5},
         "bbands": {"period": 10, "std": 3}, "rsi": 21, "atr": {"timeperiod": 7}, "adx": {"period": 9}},
        history=400)
    frame = await service.market.candles("BTC/USDT", "1h", 400)
    close = np.array([row[4] for row in frame])
    high, low = np.array([row[2] for row in frame]), np.array([row[3] for row in frame])
    got = report.indicators
    assert got["ema"].params == {"fast": 50, "slow": 200}
    assert got["ema"].values["slow"] == pytest.approx(talib.EMA(close, 200)[-1])
    assert got["macd"].params == {"fast": 5, "slow": 35, "signal": 5}
    assert got["bollinger"].params == {"period": 10, "std": 3.0}
    assert got["bollinger"].values["upper"] == pytest.approx(talib.BBANDS(close, 10, 3, 3)[0][-1])
    assert got["rsi"].values["value"] == pytest.approx(talib.RSI(close, 21)[-1])
    assert got["atr"].values["value"] == pytest.approx(talib.ATR(high, low, close, 7)[-1])
    assert got["adx"].params == {"period": 9}


async def test_vwap_names_are_apart_and_a_partial_ichimoku_is_null_with_why(service: AnalysisService) -> None:
    report = await service.indicators("BTC/USDT", "1h", ["vwap", "rolling_vwap", "ichimoku"], None, history=40)
    assert set(report.indicators["vwap"].values) == {"real"}  # TA-Lib's own VWAP
    assert report.indicators["rolling_vwap"].params == {"window": 14}
    ichimoku = report.indicators["ichimoku"]
    assert ichimoku.values["span_b"] is None and ichimoku.values["base"] is not None
    assert ichimoku.notes and "span_b" in ichimoku.notes[0] and "40 given" in ichimoku.notes[0]
