"""AnalysisService: fetch candles through MarketService, then indicators, structure, regime and
signals, cached by (candle data hash, parameters).

numpy, pandas and TA-Lib are imported on first use, not when the server starts.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from heablcoin_mcp.core.analysis.reports import (
    MIN_HISTORY,
    IndicatorResult,
    IndicatorsReport,
    MarketAnalysis,
    RegimeReport,
    RegimeThresholds,
    ScanReport,
    ScanRow,
)
from heablcoin_mcp.core.market.cache import TTLCache
from heablcoin_mcp.core.market.models import TIMEFRAME_SECONDS
from heablcoin_mcp.core.market.service import MarketService, iso
from heablcoin_mcp.errors import HeablError, InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from heablcoin_mcp.core.analysis.indicators import IndicatorEngine

T = TypeVar("T")
RESULT_TTL = 60.0
MAX_HISTORY = 5000
MAX_SERIES = 500
MAX_SCAN_SYMBOLS = 30
SCAN_CONCURRENCY = 8
SCAN_SORT_KEYS = ("change", "rsi", "adx", "volatility", "confidence", "symbol")


class AnalysisService:
    def __init__(self, market: MarketService, cache: TTLCache, thresholds: RegimeThresholds | None = None,
                 engine_factory: Callable[[], IndicatorEngine] | None = None) -> None:
        self.market = market
        self.cache = cache
        self.thresholds = thresholds or RegimeThresholds()
        self._engine_factory = engine_factory
        self._engine: IndicatorEngine | None = None

    @property
    def engine(self) -> IndicatorEngine:
        if self._engine is None:
            from heablcoin_mcp.core.analysis.indicators import IndicatorEngine

            self._engine = self._engine_factory() if self._engine_factory else IndicatorEngine()
        return self._engine

    async def _frame(self, symbol: str, timeframe: str, history: int) -> tuple[str, str, pd.DataFrame, str]:
        from heablcoin_mcp.core.analysis.candles import to_frame

        MarketService.check_range("history", history, 30, MAX_HISTORY)
        market = await self.market.market(symbol)
        tf = await self.market.timeframe(timeframe)
        rows = await self.market.candles(market.symbol, tf, history)
        frame = to_frame(rows)
        digest = hashlib.blake2b(frame.to_numpy().tobytes(), digest_size=16).hexdigest()
        return market.symbol, tf, frame, digest

    def _memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        hit = self.cache.get(key)
        if hit is None:
            hit = compute()
            self.cache.put(key, hit, RESULT_TTL)
        return hit  # type: ignore[no-any-return]

    def _stamp(self, symbol: str, timeframe: str, frame: pd.DataFrame) -> dict[str, Any]:
        return {"exchange": self.market.exchange, "symbol": symbol, "timeframe": timeframe,
                "as_of": iso(int(frame["timestamp"].iloc[-1])), "simulated": self.market.source.simulated,
                "bars": len(frame)}

    async def indicators(self, symbol: str, timeframe: str, names: list[str], params: dict[str, Any] | None,
                         history: int = 300, series: int = 0) -> IndicatorsReport:
        from heablcoin_mcp.core.analysis import catalogue
        from heablcoin_mcp.core.analysis.indicators import IndicatorParams

        MarketService.check_range("series", series, 0, MAX_SERIES)
        if not names:
            raise InvalidInput("name at least one indicator", hint="For example ['rsi', 'macd', 'sma'].")
        wanted = list(dict.fromkeys(catalogue.canonical(n) for n in names))
        if params is not None and not isinstance(params, dict):
            raise InvalidInput("params must be an object keyed by indicator", hint="e.g. {'rsi': 21, 'sma': "
                                                                                   "{'timeperiod': 50}}")
        flat: dict[str, Any] = {}
        by_name: dict[str, Any] = {}
        for key, value in (params or {}).items():
            if key in IndicatorParams.__dataclass_fields__ and key not in catalogue.CORE:  # e.g. ema_fast
                flat[key] = value
            else:
                by_name[catalogue.canonical(key)] = value
        unused = sorted(set(by_name) - set(wanted))
        if unused:
            raise InvalidInput(f"params given for indicators not requested: {', '.join(unused)}")
        for name in [n for n in by_name if n in catalogue.CORE]:  # every core parameter is honoured or refused
            flat.update(catalogue.core_params(name, by_name.pop(name)))
        params = by_name
        core_params = IndicatorParams.from_dict(flat)
        symbol, tf, frame, digest = await self._frame(symbol, timeframe, history)
        results: dict[str, IndicatorResult] = {}
        if any(n in catalogue.CORE for n in wanted):
            snapshot, arrays = self._memo(("snapshot", digest, core_params),
                                          lambda: self.engine.snapshot(frame, core_params))
            for name in (n for n in wanted if n in catalogue.CORE):
                results[name] = _core_result(name, snapshot, arrays, core_params, series)
        for name in (n for n in wanted if n not in catalogue.CORE):
            used, outputs = self._memo(("catalogue", digest, name, repr(params.get(name))),
                                       lambda name=name: catalogue.compute(frame, name, params.get(name)))
            values = {k: _num(v[-1]) for k, v in outputs.items()}
            missing = [k for k, v in values.items() if v is None]
            results[name] = IndicatorResult(
                params=used, values=values,
                series={k: [_num(x) for x in v[-series:]] for k, v in outputs.items()} if series else None,
                notes=[f"{', '.join(missing)}: not enough bars for the window ({len(frame)} given; ask for "
                       "more history)"] if missing else None)
        return IndicatorsReport(**self._stamp(symbol, tf, frame), backend=self.engine.backend.name,
                                settled=len(frame) >= MIN_HISTORY, indicators=results)

    async def regime(self, symbol: str, timeframe: str, history: int = 300) -> RegimeReport:
        from heablcoin_mcp.core.analysis.regime import detect_regime

        symbol, tf, frame, digest = await self._frame(symbol, timeframe, history)
        reading = self._memo(("regime", digest, self.thresholds), lambda: detect_regime(
            frame["close"].to_numpy(), TIMEFRAME_SECONDS[tf], self.thresholds))
        return RegimeReport(**self._stamp(symbol, tf, frame), **reading.model_dump())

    async def analyse(self, symbol: str, timeframe: str, history: int = 300, swing_length: int = 5) -> MarketAnalysis:
        from heablcoin_mcp.core.analysis.report import build_analysis

        symbol, tf, frame, digest = await self._frame(symbol, timeframe, history)
        stamp = self._stamp(symbol, tf, frame)
        change = await self.change_24h(symbol)
        return self._memo(("analysis", digest, swing_length, self.thresholds, change), lambda: build_analysis(
            stamp, frame, TIMEFRAME_SECONDS[tf], self.engine, self.thresholds, swing_length, change))

    async def change_24h(self, symbol: str) -> float | None:
        """The one 24h change: rolling 24 hours to now, as the ticker reports it, whatever the timeframe
        of the analysis (a bar-aligned change differs from chart to chart)."""
        try:
            return (await self.market.ticker(symbol)).change_24h_pct
        except HeablError:
            return None

    async def scan(self, symbols: list[str], timeframe: str, sort_by: str = "change",
                   history: int = 300) -> ScanReport:
        if not symbols:
            raise InvalidInput("name at least one symbol to scan")
        if len(symbols) > MAX_SCAN_SYMBOLS:
            raise InvalidInput(f"scan at most {MAX_SCAN_SYMBOLS} symbols at once, got {len(symbols)}")
        if sort_by not in SCAN_SORT_KEYS:
            raise InvalidInput(f"unknown sort_by {sort_by!r}", hint=f"Use one of: {', '.join(SCAN_SORT_KEYS)}.")
        tf = await self.market.timeframe(timeframe)
        rows: dict[str, ScanRow] = {}
        limiter = anyio.CapacityLimiter(SCAN_CONCURRENCY)

        async def one(symbol: str) -> None:
            async with limiter:
                try:
                    analysis = await self.analyse(symbol, tf, history)
                except HeablError as exc:
                    rows[symbol] = ScanRow(symbol=symbol, error=f"{exc.code}: {exc.message}")
                    return
            rows[symbol] = ScanRow(
                symbol=analysis.symbol, last=analysis.last, change_24h_pct=analysis.change_24h_pct,
                rsi=round(analysis.indicators.rsi.value, 2), ema_trend=analysis.indicators.ema.trend,
                adx=round(analysis.indicators.adx.adx, 2),
                volatility_daily_pct=analysis.regime.volatility_daily_pct, regime=analysis.regime.regime,
                bias=analysis.signals.bias, confidence=analysis.signals.confidence)

        async with anyio.create_task_group() as tg:
            for symbol in dict.fromkeys(symbols):
                tg.start_soon(one, symbol)
        ordered = sorted(rows.values(), key=_scan_key(sort_by))
        return ScanReport(exchange=self.market.exchange, timeframe=tf, as_of=iso(int(self.market.clock.now() * 1000)),
                          simulated=self.market.source.simulated, sort_by=sort_by, rows=ordered)


def _scan_key(sort_by: str) -> Callable[[ScanRow], tuple[Any, ...]]:
    field = {"change": "change_24h_pct", "volatility": "volatility_daily_pct"}.get(sort_by, sort_by)
    if sort_by == "symbol":
        return lambda row: (row.error is not None, row.symbol)
    return lambda row: (row.error is not None or getattr(row, field) is None, -(getattr(row, field) or 0.0))


def _num(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _core_result(name: str, snapshot: Any, arrays: Any, params: Any, series: int) -> IndicatorResult:
    state = getattr(snapshot, name).model_dump()
    param_map = {
        "ema": {"fast": params.ema_fast, "slow": params.ema_slow},
        "rsi": {"period": params.rsi},
        "macd": {"fast": params.macd_fast, "slow": params.macd_slow, "signal": params.macd_signal},
        "bollinger": {"period": params.bb_period, "std": params.bb_std},
        "adx": {"period": params.adx},
        "atr": {"period": params.atr},
    }[name]
    series_map = {
        "ema": {"fast": arrays.ema_fast, "slow": arrays.ema_slow},
        "rsi": {"value": arrays.rsi},
        "macd": {"line": arrays.macd, "signal": arrays.macd_signal, "histogram": arrays.macd_hist},
        "bollinger": {"upper": arrays.bb_upper, "middle": arrays.bb_middle, "lower": arrays.bb_lower},
        "adx": {"adx": arrays.adx, "plus_di": arrays.plus_di, "minus_di": arrays.minus_di},
        "atr": {"value": arrays.atr},
    }[name]
    tails = {k: [_num(x) for x in v[-series:]] for k, v in series_map.items()} if series else None
    return IndicatorResult(params=param_map, values=state, series=tails)
