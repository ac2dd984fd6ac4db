"""What the server pushes to clients without being asked: resource updates and log messages.

Resource updates travel both ways a client may ask for them: ``resources/subscribe`` on 2025-era
connections (``notifications/resources/updated`` on the connection's standalone stream) and
``subscriptions/listen`` on 2026-07-28 connections (the SDK's SubscriptionBus, which filters per
stream). What changed comes from core/changes.py, polled from the database, so a task finished by
a worker process or a state set from the CLI is pushed like a fill made here (tasks: only the ones
subscribed to are read). A market's ticker
(``heablcoin://market/<market>/ticker``) is pushed from its stream while anyone, of either era,
subscribes to it: at most once a second, the last change of a busy second never lost.

Log messages: ``logging/setLevel`` on a 2025-era connection subscribes it to this package's log
records at or above that level (never more detailed than HEABLCOIN_LOG_LEVEL), scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.types import (
    INVALID_PARAMS,
    EmptyResult,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from heablcoin_mcp.core.changes import JOURNAL, OPEN_ORDERS, RISK, ChangeFeed
from heablcoin_mcp.core.market.streams import MarketStreams
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.errors import HeablError

log = logging.getLogger(__name__)

SCHEME = "heablcoin://"
WATCHED = re.compile(rf"^{re.escape(SCHEME)}({re.escape(JOURNAL)}|{re.escape(RISK)}|{re.escape(OPEN_ORDERS)}|"
                     r"portfolio/[^/]+|tasks/[^/]+|market/[^/]+/ticker)$")
TICKER = re.compile(rf"^{re.escape(SCHEME)}market/([^/]+)/ticker$")
TASK = re.compile(rf"^{re.escape(SCHEME)}tasks/([^/]+)$")
PUSH_INTERVAL = 1.0  # seconds: at most one ticker push per resource
# MCP's syslog levels, least severe first, and the Python level each one starts at.
MCP_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
PYTHON_LEVELS = dict(zip(MCP_LEVELS, (logging.DEBUG, logging.INFO, logging.INFO + 5, logging.WARNING,
                                      logging.ERROR, logging.CRITICAL, logging.CRITICAL + 5,
                                      logging.CRITICAL + 10), strict=True))
LOG_BACKLOG = 1000


def connection_of(session: ServerSession) -> object:
    """The SDK hands each request a fresh ServerSession proxy; the connection it wraps is what lasts
    between requests, so subscriptions and log levels are kept per connection."""
    return getattr(session, "_connection", session)


def mcp_level(levelno: int) -> str:
    return next((name for name in reversed(MCP_LEVELS) if levelno >= PYTHON_LEVELS[name]), "debug")


class Pushes:
    def __init__(self, feed: ChangeFeed, bus: SubscriptionBus, redactor: Redactor,
                 read: Callable[[str], Awaitable[object]], *, interval: float = 1.0,
                 streams: MarketStreams | None = None, symbol_of: Callable[[str], Awaitable[str]] | None = None
                 ) -> None:
        self.feed = feed
        self.bus = bus
        self.redactor = redactor
        self.read = read  # MCPServer.read_resource: a subscription is taken only to a resource that exists
        self.interval = interval
        self.streams = streams
        self.symbol_of = symbol_of  # a market as typed in a URI -> its canonical symbol
        self._listen = ListenHandler(bus)
        self._listening: Counter[str] = Counter()  # URIs open 2026-era listen streams asked for
        self._subscribing: Counter[str] = Counter()  # URIs a resources/subscribe is reading right now
        self._tickers: dict[str, anyio.CancelScope] = {}
        self._group: anyio.abc.TaskGroup | None = None
        self._subscribed: dict[object, tuple[ServerSession, set[str]]] = {}
        self._log_levels: dict[object, tuple[ServerSession, int]] = {}
        self._logs: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue(LOG_BACKLOG)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler = _ForwardingHandler(self)

    # --- request handlers (registered by build_server) ---

    async def subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        if not WATCHED.match(uri):
            raise MCPError(INVALID_PARAMS, f"no updates are published for {uri}; subscribe to "
                           f"{SCHEME}{JOURNAL}, {SCHEME}{RISK}, {SCHEME}{OPEN_ORDERS}, {SCHEME}portfolio/<account>, "
                           f"{SCHEME}tasks/<id> or {SCHEME}market/<market>/ticker")
        if TICKER.match(uri) and self.streams is None:
            raise MCPError(INVALID_PARAMS, f"live streams are off here (HEABLCOIN_STREAMS=false), so {uri} is never "
                           "pushed; read it when needed, or call watch_market")
        self._subscribing[uri] += 1  # watched from before the read: a change after it is news
        try:
            self.feed.watch_tasks(_task_ids([uri]))
            await self.read(uri)
        except ResourceError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from exc
        finally:
            self._subscribing[uri] -= 1
        session = ctx.session
        _, uris = self._subscribed.setdefault(connection_of(session), (session, set()))
        uris.add(uri)
        await self._follow_tickers()
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> EmptyResult:
        entry = self._subscribed.get(connection_of(ctx.session))
        if entry:
            entry[1].discard(str(params.uri))
        await self._follow_tickers()
        return EmptyResult()

    async def listen(self, ctx: ServerRequestContext[Any],
                     params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        """The SDK's 2026-07-28 listen stream, noting which URIs it asked for while it is open (so a
        market's ticker is streamed for it)."""
        uris = [str(u) for u in params.notifications.resource_subscriptions or ()]
        self.feed.watch_tasks(_task_ids(uris))
        self._listening.update(uris)
        try:
            await self._follow_tickers()
            return await self._listen(ctx, params)
        finally:
            self._listening.subtract(uris)
            with anyio.CancelScope(shield=True):
                await self._follow_tickers()

    async def set_level(self, ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
        self._log_levels[connection_of(ctx.session)] = (ctx.session, PYTHON_LEVELS[params.level])
        return EmptyResult()

    # --- the background side (run inside the server's lifespan) ---

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        package = logging.getLogger("heablcoin_mcp")
        package.addHandler(self._handler)
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._forward_logs)
                await self._watch()
        finally:
            self._group = None
            self._tickers.clear()
            self._listen.close()
            package.removeHandler(self._handler)

    def _wanted(self) -> set[str]:
        """Every URI a connection of either era wants pushed."""
        return ({uri for _, uris in self._subscribed.values() for uri in uris}
                | {uri for uri, n in self._listening.items() if n > 0})

    def _watched_tasks(self) -> set[str]:
        return _task_ids(self._wanted() | {uri for uri, n in self._subscribing.items() if n > 0})

    async def _follow_tickers(self) -> None:
        """One ticker follower for each market resource someone wants, none for the rest."""
        wanted = {uri for uri in self._wanted() if TICKER.match(uri)}
        for uri in set(self._tickers) - wanted:
            self._tickers.pop(uri).cancel()
        if self._group is None or self.streams is None or not self.streams.running or self.symbol_of is None:
            return
        for uri in wanted - set(self._tickers):
            match = TICKER.match(uri)
            assert match is not None
            self._tickers[uri] = await self._group.start(self._push_ticker, uri, await self.symbol_of(match[1]))

    async def _push_ticker(self, uri: str, symbol: str, *,
                           task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self.streams is not None
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            try:
                async with self.streams.subscribe("ticker", symbol) as updates:
                    changed = False
                    while True:
                        if not changed:
                            await updates.receive()
                        await self.updated(uri)
                        await anyio.sleep(PUSH_INTERVAL)
                        changed = _drained(updates) > 0  # what came meanwhile goes out as one push now
            except (anyio.EndOfStream, HeablError) as exc:  # the streams stopped: taken up again when they run
                log.debug("ticker pushes for %s paused: %r", uri, exc)
            finally:
                if self._tickers.get(uri) is scope:
                    del self._tickers[uri]

    async def _watch(self) -> None:
        while True:
            try:
                changed = self.feed.poll(self._watched_tasks())
            except Exception as exc:  # a busy or briefly locked database: look again next time
                log.debug("change poll failed: %s", exc)
                changed = []
            for path in changed:
                await self.updated(SCHEME + path)
            await self._follow_tickers()  # streams that started (or restarted) since a subscription came
            await anyio.sleep(self.interval)

    async def updated(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        gone = False
        for key, (session, uris) in list(self._subscribed.items()):
            if uri in uris and not await _delivered(session.send_resource_updated(uri)):
                self._subscribed.pop(key, None)
                gone = True
        if gone and self._group is not None:
            self._group.start_soon(self._follow_tickers)  # not from inside a follower it may cancel

    def offer_log(self, record: logging.LogRecord, text: str) -> None:
        """Called by the logging handler, from any thread."""
        if not self._log_levels or self._loop is None or self._loop.is_closed():
            return
        item = (record.levelno, record.name, self.redactor.scrub(text))
        self._loop.call_soon_threadsafe(_put_or_drop, self._logs, item)

    async def _forward_logs(self) -> None:
        while True:
            levelno, logger, text = await self._logs.get()
            for key, (session, threshold) in list(self._log_levels.items()):
                message = LoggingMessageNotification(
                    params=LoggingMessageNotificationParams(level=mcp_level(levelno), data=text, logger=logger))
                if levelno >= threshold and not await _delivered(session.send_notification(message)):
                    self._log_levels.pop(key, None)


def _task_ids(uris: Iterable[str]) -> set[str]:
    return {match[1] for uri in uris if (match := TASK.match(uri))}


async def _delivered(send: Any) -> bool:
    """False once a connection is gone: its subscriptions end with it."""
    try:
        await send
        return True
    except Exception:
        return False


def _drained(updates: MemoryObjectReceiveStream[Any]) -> int:
    count = 0
    while True:
        try:
            updates.receive_nowait()
        except anyio.WouldBlock:
            return count
        count += 1


def _put_or_drop(queue: asyncio.Queue[Any], item: Any) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a slow client loses log lines, never the server's memory
        queue.put_nowait(item)


class _ForwardingHandler(logging.Handler):
    def __init__(self, pushes: Pushes) -> None:
        super().__init__()
        self.pushes = pushes
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pushes.offer_log(record, self.format(record))
        except Exception:
            self.handleError(record)
