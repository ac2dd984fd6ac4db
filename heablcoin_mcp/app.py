"""App: the composition root. The one place that builds services from Settings and owns their life.

The App lives as long as the process, not a client session. The server lifespan calls
``acquire()``/``release()``: the first user starts it, the last one stops it. On SSE the SDK runs the
lifespan once per connection, so two SSE clients share one started App instead of starting two.
"""

from __future__ import annotations

import logging

import anyio

from heablcoin_mcp import __version__
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.analysis.reports import RegimeThresholds
from heablcoin_mcp.core.analysis.service import AnalysisService
from heablcoin_mcp.core.clock import Clock, SystemClock
from heablcoin_mcp.core.market.cache import TTLCache
from heablcoin_mcp.core.market.models import MarketData
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.monitor.health import (
    ComponentHealth,
    DatabaseInfo,
    SystemHealth,
    overall,
)
from heablcoin_mcp.core.storage import Database

log = logging.getLogger(__name__)


class App:
    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, market_source: MarketData | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.db = Database(settings.db_path, synchronous=settings.db_synchronous)
        self.market = MarketService(
            market_source or build_market_source(settings, self.clock),
            TTLCache(self.clock, max_bytes=settings.market_cache_mb * 1024 * 1024),
            self.clock,
        )
        self.analysis = AnalysisService(
            self.market,
            TTLCache(self.clock, max_bytes=32 * 1024 * 1024),
            RegimeThresholds(
                crash_change_pct=settings.regime_crash_change_pct,
                rally_change_pct=settings.regime_rally_change_pct,
                high_vol_daily_pct=settings.regime_high_vol_daily_pct,
                low_vol_daily_pct=settings.regime_low_vol_daily_pct,
                window_days=settings.regime_window_days,
            ),
        )
        self._started_at: float | None = None
        self._users = 0
        self._lock = anyio.Lock()

    @property
    def started(self) -> bool:
        return self._started_at is not None

    async def acquire(self) -> App:
        async with self._lock:
            if self._users == 0 and not self.started:
                await anyio.to_thread.run_sync(self._start)
            self._users += 1
        return self

    async def release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                await self.aclose()

    def _start(self) -> None:
        applied = self.db.migrate()
        self._started_at = self.clock.monotonic()
        log.info("started: db=%s (schema v%d, %d migration(s) applied) exchange=%s mode=%s",
                 self.db.path, self.db.schema_version(), applied, self.settings.exchange,
                 self.settings.trading_mode)

    async def aclose(self) -> None:
        """Stop every service; safe to call twice."""
        if self.started:
            self._started_at = None
            await self.market.source.close()
            self.db.close()
            log.info("stopped")

    async def __aenter__(self) -> App:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def health(self) -> SystemHealth:
        database, database_health = self._database_health()
        components = [database_health, self.market.health()]
        uptime = self.clock.monotonic() - self._started_at if self._started_at is not None else 0.0
        return SystemHealth(
            status=overall(components),
            version=__version__,
            uptime_seconds=round(uptime, 3),
            transport=self.settings.transport,
            trading_mode=self.settings.trading_mode,
            exchange=self.settings.exchange,
            simulated_market=self.settings.exchange == "sim",
            database=database,
            toolsets=list(self.settings.toolsets),
            components=components,
        )

    def _database_health(self) -> tuple[DatabaseInfo | None, ComponentHealth]:
        try:
            info = DatabaseInfo(
                path=str(self.db.path),
                journal_mode=self.db.journal_mode(),
                synchronous=self.db.synchronous,
                schema_version=self.db.schema_version(),
                size_bytes=self.db.size_bytes(),
            )
        except Exception as exc:  # health must report, not raise
            log.exception("database health check failed")
            return None, ComponentHealth(name="database", status="down", detail=type(exc).__name__)
        expected = self.db.migrations[-1].version
        if info.schema_version != expected:
            detail = f"schema v{info.schema_version}, expected v{expected}"
            return info, ComponentHealth(name="database", status="degraded", detail=detail)
        return info, ComponentHealth(name="database", status="ok", detail=f"schema v{expected}")


def build_market_source(settings: Settings, clock: Clock) -> MarketData:
    if settings.exchange == "sim":
        from heablcoin_mcp.core.market.sim import SimMarketData

        return SimMarketData(clock)
    from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, Proxies

    return CcxtMarketData(
        settings.exchange,
        market_type=settings.market_type,
        proxies=Proxies(http=settings.http_proxy, https=settings.https_proxy, socks=settings.socks_proxy),
        timeout_seconds=settings.exchange_timeout,
    )
