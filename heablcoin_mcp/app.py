"""App: the composition root. The one place that builds services from Settings and owns their life.

The App lives as long as the process, not a client session. The server lifespan calls
``acquire()``/``release()``: the first user starts it, the last one stops it. On SSE the SDK runs the
lifespan once per connection, so two SSE clients share one started App instead of starting two.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import anyio

from heablcoin_mcp import __version__
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.analysis.reports import RegimeThresholds
from heablcoin_mcp.core.analysis.service import AnalysisService
from heablcoin_mcp.core.clock import Clock, SystemClock
from heablcoin_mcp.core.llm.endpoints import ApiEndpoint, EndpointPolicy, EndpointStore
from heablcoin_mcp.core.llm.manager import ApiManager
from heablcoin_mcp.core.llm.shared import LocalHealth, RedisHealth
from heablcoin_mcp.core.market.cache import TTLCache
from heablcoin_mcp.core.market.ccxt_source import Proxies
from heablcoin_mcp.core.market.limiter import SharedExchangeLimiter
from heablcoin_mcp.core.market.models import MarketData
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.market.streams import MarketStreams, StreamPolicy, StreamSource
from heablcoin_mcp.core.monitor.health import HealthMonitor
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.core.risk.engine import RiskEngine
from heablcoin_mcp.core.risk.limits import RiskLimits
from heablcoin_mcp.core.storage import open_storage
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.core.tasks.alerts import StreamedAlerts
from heablcoin_mcp.core.tasks.handlers import builtin_handlers
from heablcoin_mcp.core.tasks.queue import QueuePolicy, TaskQueue
from heablcoin_mcp.core.tasks.scheduler import Scheduler
from heablcoin_mcp.core.tasks.stats import PRIORITY_NAMES
from heablcoin_mcp.core.tasks.taskflow import TaskService
from heablcoin_mcp.core.tasks.webhooks import Webhooks
from heablcoin_mcp.core.tasks.worker import Worker
from heablcoin_mcp.core.trading.accounts import AccountService
from heablcoin_mcp.core.trading.execution import Executor
from heablcoin_mcp.core.trading.live import LiveBrokers
from heablcoin_mcp.core.trading.matcher import Matcher
from heablcoin_mcp.core.trading.orders import OrderService
from heablcoin_mcp.core.trading.portfolio import PortfolioService
from heablcoin_mcp.core.trading.pricing import Pricer
from heablcoin_mcp.core.trading.records import OrderRecords
from heablcoin_mcp.core.trading.sizing import PositionSizer

log = logging.getLogger(__name__)


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        market_source: MarketData | None = None,
        stream_source: StreamSource | None = None,
        environ: Mapping[str, str] | None = None,
        live_api_base: str | None = None,
    ) -> None:
        """``live_api_base`` points live order traffic at another host (a testnet, or the loopback
        fake exchange in tests). Streams come from ``stream_source``, else from the configured
        exchange (ccxt.pro, or the sim market); a custom ``market_source`` without one has none."""
        self.settings = settings
        self.environ: Mapping[str, str] = environ or {}  # where keys live; read only by the services needing them
        self.clock = clock or SystemClock()
        self.redactor = Redactor(self.environ, values=secret_settings(settings))
        self.metrics = Metrics()
        # with Redis, every ccxt client of every process shares one request budget per (exchange, account)
        self.exchange_limiter = SharedExchangeLimiter(settings.redis_url) if settings.redis_url else None
        self.db = open_storage(settings.database_url, settings.db_path, synchronous=settings.db_synchronous,
                               busy_timeout_ms=int(settings.db_busy_timeout * 1000))
        self.market = MarketService(
            market_source or build_market_source(settings, self.clock, self.exchange_limiter),
            TTLCache(self.clock, max_bytes=settings.market_cache_mb * 1024 * 1024),
            self.clock,
            self.metrics,
        )
        source = stream_source or build_stream_source(settings, self.clock, self.market.source,
                                                      custom_market=market_source is not None)
        self.streams = MarketStreams(source, self.clock, StreamPolicy(
            stale_after=settings.stream_stale_seconds, ping_seconds=settings.stream_ping_seconds),
            self.metrics) if source is not None and settings.streams else None
        self.market.streams = self.streams
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
        self.accounts = AccountService(
            self.db, self.clock, self.environ, default_exchange=settings.exchange,
            quote_asset=settings.quote_asset, initial_balance=settings.paper_initial_balance, redactor=self.redactor,
        )
        self.consents = Consents(self.db, self.clock)
        self.risk = RiskEngine(self.db, risk_limits(settings), self.clock, self.consents)
        self.brokers = LiveBrokers(
            self.environ, timeout_seconds=settings.exchange_timeout, proxies=proxies(settings), api_base=live_api_base,
            redactor=self.redactor, limiter=self.exchange_limiter,
        )
        self.portfolio = PortfolioService(
            self.db, self.market, self.accounts, self.brokers, settings.quote_asset, settings.paper_initial_balance,
            trading_mode=settings.trading_mode,
        )
        self.records = OrderRecords(self.db, self.clock)
        pricer = Pricer(
            self.db, self.market, self.analysis, self.risk, self.portfolio, self.accounts, self.records,
            trading_mode=settings.trading_mode, slippage_bps=settings.paper_slippage_bps,
        )
        executor = Executor(self.db, self.clock, self.market, self.brokers, self.records,
                            slippage_bps=settings.paper_slippage_bps, metrics=self.metrics)
        self.orders = OrderService(
            self.db, self.clock, self.market, self.risk, self.portfolio, self.accounts, self.brokers, self.records,
            pricer, executor, trading_mode=settings.trading_mode,
        )
        self.matcher = Matcher(self.db, self.clock, self.market, self.brokers, self.accounts, executor,
                               slippage_bps=settings.paper_slippage_bps)
        self.sizer = PositionSizer(self.market, self.analysis, self.portfolio, self.risk, pricer)
        self.endpoints = EndpointStore(self.db, self.clock, self.consents, EndpointPolicy(
            key_patterns=settings.ai_key_env_patterns, allow_private=settings.ai_allow_private,
            other_secrets=self.accounts.key_variables), self.redactor)
        self.shared_health = RedisHealth(settings.redis_url) if settings.redis_url else LocalHealth()
        self.ai = ApiManager(self.endpoints, self.clock, self.environ, deadline=settings.ai_deadline,
                             redactor=self.redactor, shared=self.shared_health)
        self.queue = TaskQueue(self.db, self.clock, QueuePolicy(lease_seconds=settings.task_lease_seconds,
                                                                aging_seconds=settings.task_aging_seconds))
        self.webhooks = Webhooks(
            self.db, self.clock, settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
            allow_private=settings.webhook_allow_private,
        )
        self.alerts = StreamedAlerts(self.db, self.queue, self.market, self.streams) if self.streams else None
        self.scheduler = Scheduler(self.db, self.queue, self.clock)
        handlers = builtin_handlers(self)
        self.tasks = TaskService(self.queue, handlers, self.scheduler, self.webhooks, self.clock)
        self.worker = Worker(self.queue, handlers, self.scheduler, self.webhooks,
                             concurrency=settings.worker_concurrency, poll_interval=settings.task_poll_interval,
                             metrics=self.metrics)
        self.metrics.add_gauges(self._gauges)
        self.monitor = HealthMonitor(
            facts={"version": __version__, "transport": settings.transport, "trading_mode": settings.trading_mode,
                   "exchange": settings.exchange, "simulated_market": settings.exchange == "sim",
                   "toolsets": list(settings.toolsets)},
            uptime=self.uptime, database=self.db.health,
            components=[self.market.health, *([self.streams.health] if self.streams else []), self.orders.health,
                        self.ai.component_health, self.worker.health,
                        *([self.shared_health.component_health] if isinstance(self.shared_health, RedisHealth)
                          else [])],
        )
        self._background = anyio.Lock()
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
        self.accounts.ensure_default()
        self.redactor.watch(*self.accounts.key_variables(), *(e.api_key_env for e in self.endpoints.all()))
        for declared in self.settings.ai_endpoints:  # endpoints declared in settings win over stored ones
            self.endpoints.add(ApiEndpoint.model_validate(declared), source="settings", replace=True)
        self._started_at = self.clock.monotonic()
        log.info("started: db=%s (schema v%d, %d migration(s) applied) exchange=%s mode=%s",
                 self.db.location, self.db.schema_version(), applied, self.settings.exchange,
                 self.settings.trading_mode)

    async def aclose(self) -> None:
        """Stop every service; safe to call twice."""
        if self.started:
            self._started_at = None
            await self.market.source.close()
            await self.brokers.close()
            await self.ai.close()
            await self.webhooks.close()
            if self.exchange_limiter is not None:
                await self.exchange_limiter.aclose()
            log.info("stopped")
        self.shared_health.close()
        self.db.close()  # also when never started: a service read through it before

    async def run_background(self, *, matcher: bool = True, worker: bool = True) -> None:
        """The paper-order matcher and the task worker. At most one set runs per process: sessions
        that start it while one already runs wait on the lock, and take over if that session ends."""
        async with self._background, anyio.create_task_group() as tg:
            if self.streams is not None:
                await tg.start(self.streams.run)
            if matcher:
                tg.start_soon(self.matcher.run, self.settings.paper_matcher_interval)
                if self.streams is not None:
                    tg.start_soon(self.matcher.follow_trades, self.streams, self.settings.paper_matcher_interval)
            if worker and self.settings.worker_concurrency > 0:
                tg.start_soon(self.worker.run)
                if self.alerts is not None:
                    tg.start_soon(self.alerts.run, self.settings.task_poll_interval * 4)

    async def __aenter__(self) -> App:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def _gauges(self) -> list[tuple[str, str, tuple[str, ...], dict[tuple[str, ...], float]]]:
        """Read at scrape time: queue depth, AI endpoint state and budgets, the database."""
        depth = {(str(status), PRIORITY_NAMES[priority]): float(n) for status, priority, n in self.db.conn.execute(
            "SELECT status, priority, sum(n) FROM task_counts GROUP BY status, priority HAVING sum(n) > 0")}
        states: dict[tuple[str, ...], float] = {}
        budgets: dict[tuple[str, ...], float] = {}
        for endpoint in self.ai.endpoints():
            health = self.ai.health(endpoint)
            states[(endpoint.name, health.status() if endpoint.enabled else "DISABLED")] = 1.0
            budgets[(endpoint.name, "requests")] = max(0.0, health.requests.level)
            if health.tokens is not None:
                budgets[(endpoint.name, "tokens")] = max(0.0, health.tokens.level)
        _, database = self.db.health()
        return [
            ("heablcoin_tasks", "tasks stored, by status and priority", ("status", "priority"), depth),
            ("heablcoin_ai_endpoint_state", "1 for each AI endpoint's current state", ("endpoint", "state"), states),
            ("heablcoin_ai_endpoint_budget", "what is left of each AI endpoint's per-minute budgets",
             ("endpoint", "budget"), budgets),
            ("heablcoin_database_up", "1 when the database answers with the expected schema", ("engine",),
             {(self.db.engine,): float(database.status == "ok")}),
        ]

    def uptime(self) -> float:
        return self.clock.monotonic() - self._started_at if self._started_at is not None else 0.0


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        max_order_notional=settings.risk_max_order_notional,
        max_position_fraction=settings.risk_max_position_fraction,
        max_total_exposure=settings.risk_max_total_exposure,
        max_open_orders=settings.risk_max_open_orders,
        daily_loss_limit=settings.risk_daily_loss_limit,
        max_leverage=settings.risk_max_leverage,
        risk_per_trade_pct=settings.risk_per_trade_pct,
        max_risk_per_trade_pct=settings.risk_max_per_trade_pct,
        allow_symbols=settings.risk_allow_symbols,
        deny_symbols=settings.risk_deny_symbols,
    )


def build_market_source(settings: Settings, clock: Clock, limiter: SharedExchangeLimiter | None = None) -> MarketData:
    if settings.exchange == "sim":
        from heablcoin_mcp.core.market.sim import SimMarketData

        return SimMarketData(clock)
    from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData

    return CcxtMarketData(
        settings.exchange,
        market_type=settings.market_type,
        proxies=proxies(settings),
        timeout_seconds=settings.exchange_timeout,
        limiter=limiter,
    )


def build_stream_source(settings: Settings, clock: Clock, market: MarketData, *,
                        custom_market: bool) -> StreamSource | None:
    from heablcoin_mcp.core.market.sim import SimMarketData

    if isinstance(market, SimMarketData):
        from heablcoin_mcp.core.market.sim_streams import SimStreams

        return SimStreams(market, clock)
    if custom_market:
        return None
    from heablcoin_mcp.core.market.ccxt_streams import CcxtStreams

    return CcxtStreams(settings.exchange, market_type=settings.market_type, proxies=proxies(settings),
                       timeout_seconds=settings.exchange_timeout, ping_seconds=settings.stream_ping_seconds)


def secret_settings(settings: Settings) -> list[str]:
    """Secret values the settings hold (they may come from a .env file, not the environment)."""
    values = [s.get_secret_value() for s in (settings.auth_token, settings.webhook_secret) if s is not None]
    for proxy in (settings.http_proxy, settings.https_proxy, settings.socks_proxy, settings.database_url,
                  settings.redis_url):
        password = urlsplit(proxy).password if proxy else None
        if password:
            values.append(password)
    return values


def proxies(settings: Settings) -> Proxies:
    return Proxies(http=settings.http_proxy, https=settings.https_proxy, socks=settings.socks_proxy)
