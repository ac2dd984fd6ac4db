"""Live market streams shared by every consumer in this process.

One runner per (kind, symbol), started by the first subscriber and stopped with the last. A runner
waits for the source's next update and hands it to every subscriber's buffer. Around that wait:

- staleness: no update for ``stale_after`` seconds means a silent feed; the source drops that
  connection and the runner watches again (a new connection, the subscription sent again). Trades
  may rightly pause on a quiet market, so a trade stream is given ``QUIET_TRADES`` times longer
  and its silence is not reported as trouble;
- failures (refused or broken connections) wait with exponential backoff and jitter,
  ``initial_delay`` doubling to ``max_delay``, and after ``long_after`` consecutive failures the long
  delay (``max_delay``) every time, so a dead exchange is not hammered;
- order books: a sequence gap or a book that fails its check (``orderbook.check_book``) is a gap:
  the source resyncs (a new snapshot) before the next update is served.

Heartbeats (pings every ``StreamPolicy.ping_seconds``) are the source's: ccxt's keepalive closes a
connection whose pongs stop. Every figure of every stream is in ``health()``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.orderbook import BookGap, BookView, check_book
from heablcoin_mcp.core.monitor.health import ComponentHealth
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.errors import ExchangeUnavailable, HeablError

log = logging.getLogger(__name__)

Kind = Literal["ticker", "trades", "book", "candles"]
QUIET_TRADES = 5  # a trade stream's silence window, in stale_after units


@dataclass(frozen=True)
class StreamPolicy:
    stale_after: float = 60.0
    initial_delay: float = 1.0
    max_delay: float = 300.0
    long_after: int = 5
    jitter: float = 0.25
    ping_seconds: float = 10.0

    def delay(self, failures: int, draw: float) -> float:
        """Seconds to wait after ``failures`` consecutive failures; ``draw`` is uniform in [0, 1)."""
        if failures > self.long_after:
            base = self.max_delay
        else:
            base = min(self.max_delay, self.initial_delay * 2 ** (failures - 1))
        return base * (1 - self.jitter + 2 * self.jitter * draw)


@dataclass(frozen=True)
class StreamKey:
    kind: Kind
    symbol: str


class StreamSource(Protocol):
    """Where updates come from: ccxt.pro (``ccxt_streams``) or the simulated market (``sim_streams``).

    ``next`` waits for the next update of a stream (a Ticker, a list of new Trades, a BookView, or a
    list of 1m candles) and may raise HeablError (connection trouble) or BookGap."""

    name: str
    simulated: bool

    async def next(self, key: StreamKey) -> Any: ...

    async def drop_connection(self, key: StreamKey) -> None: ...

    async def resync(self, key: StreamKey) -> None: ...

    async def stop(self, key: StreamKey) -> None: ...

    async def close(self) -> None: ...


@dataclass
class _Stream:
    key: StreamKey
    subscribers: set[MemoryObjectSendStream[Any]] = field(default_factory=set)
    scope: anyio.CancelScope | None = None
    latest: Any = None
    connected: bool = False
    messages: int = 0
    last_message_at: float | None = None  # monotonic
    reconnects: int = 0
    stale: int = 0
    gaps: int = 0
    failures: int = 0  # consecutive
    dropped: int = 0  # updates a full subscriber buffer did not take
    last_error: str | None = None

    def down(self, reason: str) -> None:
        self.connected = False
        self.last_error = reason


class MarketStreams:
    def __init__(self, source: StreamSource, clock: Clock, policy: StreamPolicy | None = None,
                 metrics: Metrics | None = None) -> None:
        self.source = source
        self.clock = clock
        self.policy = policy or StreamPolicy()
        self.metrics = metrics or Metrics()
        self._streams: dict[StreamKey, _Stream] = {}
        self._group: TaskGroup | None = None
        self._random = random.Random()

    @property
    def running(self) -> bool:
        return self._group is not None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve streams until cancelled; subscribers may come and go meanwhile."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._group = None
            for stream in self._streams.values():  # every subscriber sees the end instead of waiting forever
                for send in stream.subscribers:
                    send.close()
            self._streams.clear()
            with anyio.CancelScope(shield=True):
                await self.source.close()

    @asynccontextmanager
    async def subscribe(self, kind: Kind, symbol: str, buffer: int = 1000) -> AsyncIterator[
            MemoryObjectReceiveStream[Any]]:
        """Receive every update of a stream while the block runs. ``symbol`` must be canonical.

        Raises:
            ExchangeUnavailable: streams are not running in this process.
        """
        if self._group is None:
            raise ExchangeUnavailable("market streams are not running in this process",
                                     hint="They run beside the server or the worker; prices are polled meanwhile.")
        key = StreamKey(kind, symbol)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(key)
            await self._group.start(self._run, stream)
        send, receive = anyio.create_memory_object_stream[Any](buffer)
        stream.subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            send.close()
            stream.subscribers.discard(send)
            if not stream.subscribers and self._streams.get(key) is stream:
                del self._streams[key]
                if stream.scope is not None:
                    stream.scope.cancel()
                with anyio.CancelScope(shield=True):
                    try:
                        await self.source.stop(key)
                    except Exception as exc:  # the stream is gone either way
                        log.debug("stopping %s %s: %s", kind, symbol, exc)

    async def follow(self, kind: Kind, symbols: Callable[[], Awaitable[set[str]]],
                     handle: Callable[[str, Any], Awaitable[None]], refresh: float) -> None:
        """Keep one subscription for each symbol ``symbols()`` names (asked again every ``refresh``
        seconds) and hand every update to ``handle``; one failing update never stops the rest."""
        scopes: dict[str, anyio.CancelScope] = {}
        async with anyio.create_task_group() as group:
            while True:
                try:
                    wanted = await symbols()
                except Exception:  # keep what is followed until the next look
                    log.exception("which symbols to stream for %s", kind)
                    wanted = set(scopes)
                for symbol in set(scopes) - wanted:
                    scopes.pop(symbol).cancel()
                for symbol in wanted - set(scopes):
                    scopes[symbol] = await group.start(self._follow_one, kind, symbol, handle)
                await anyio.sleep(refresh)

    async def _follow_one(self, kind: Kind, symbol: str, handle: Callable[[str, Any], Awaitable[None]], *,
                          task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with self.subscribe(kind, symbol) as updates:
                async for update in updates:
                    try:
                        await handle(symbol, update)
                    except Exception:
                        log.exception("handling a %s update of %s", kind, symbol)

    def latest(self, kind: Kind, symbol: str, max_age: float) -> Any:
        """The newest update of a live stream if it is younger than ``max_age`` seconds, else None."""
        stream = self._streams.get(StreamKey(kind, symbol))
        if stream is None or not stream.connected or stream.last_message_at is None:
            return None
        return stream.latest if self.clock.monotonic() - stream.last_message_at <= max_age else None

    async def _run(self, stream: _Stream, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope() as stream.scope:
            task_status.started()
            while True:
                await self._step(stream)

    async def _step(self, stream: _Stream) -> None:
        key = stream.key
        silence = self.policy.stale_after * (QUIET_TRADES if key.kind == "trades" else 1)
        try:
            with anyio.fail_after(silence):
                update = await self.source.next(key)
            if isinstance(update, BookView):
                check_book(update)
        except TimeoutError:
            stream.stale += 1
            reason = f"no update for {silence:g} s: reconnecting"
            if key.kind == "trades":
                stream.last_error = reason  # a quiet market, or a dead feed: either way, a fresh connection
            else:
                stream.down(reason)
            log.warning("%s %s stream silent for %g s: reconnecting", key.kind, key.symbol, silence)
            await self.source.drop_connection(key)
            return
        except BookGap as exc:
            stream.gaps += 1
            stream.last_error = f"order book gap: {exc}; resyncing from a new snapshot"
            log.warning("%s order book: %s; resyncing", key.symbol, exc)
            await self.source.resync(key)
            return
        except HeablError as exc:
            stream.failures += 1
            stream.down(exc.message)
            wait = self.policy.delay(stream.failures, self._random.random())
            log.warning("%s %s stream: %s (failure %d, retrying in %.1f s)", key.kind, key.symbol, exc.message,
                        stream.failures, wait)
            await anyio.sleep(wait)
            return
        self._deliver(stream, update)

    def _deliver(self, stream: _Stream, update: Any) -> None:
        if not stream.connected and stream.messages:
            stream.reconnects += 1
        stream.connected, stream.failures = True, 0
        stream.messages += 1
        stream.last_message_at = self.clock.monotonic()
        stream.latest = update
        self.metrics.count("heablcoin_stream_messages", stream.key.kind, self.source.name)
        for send in list(stream.subscribers):
            try:
                send.send_nowait(update)
            except anyio.WouldBlock:
                stream.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                stream.subscribers.discard(send)

    def health(self) -> ComponentHealth:
        now = self.clock.monotonic()
        metrics: dict[str, float | int | str | None] = {"streams": len(self._streams)}
        troubled = []
        for stream in self._streams.values():
            name = f"{stream.key.kind}:{stream.key.symbol}"
            age = round(now - stream.last_message_at, 3) if stream.last_message_at is not None else None
            metrics.update({
                f"{name}:connected": int(stream.connected), f"{name}:subscribers": len(stream.subscribers),
                f"{name}:messages": stream.messages, f"{name}:last_message_age_s": age,
                f"{name}:reconnects": stream.reconnects, f"{name}:stale_reconnects": stream.stale,
                f"{name}:gaps": stream.gaps, f"{name}:failures": stream.failures, f"{name}:dropped": stream.dropped,
            })
            if isinstance(stream.latest, BookView):
                metrics[f"{name}:depth"] = min(len(stream.latest.bids), len(stream.latest.asks))
            if not stream.connected:
                troubled.append(f"{name} {stream.last_error or 'connecting'}")
        source = f"{self.source.name}{' (simulated)' if self.source.simulated else ''}"
        if not self.running:
            return ComponentHealth(name="streams", status="ok", detail=f"{source}: not running in this process",
                                   metrics=metrics)
        if troubled:
            return ComponentHealth(name="streams", status="degraded", detail=f"{source}: {'; '.join(troubled)}",
                                   metrics=metrics)
        return ComponentHealth(name="streams", status="ok", detail=f"{source}: {len(self._streams)} live",
                               metrics=metrics)
