"""The streams hub's own rules, over a source a test feeds by hand: reference counting, the end of
the hub, follow() keeping one subscription per wanted symbol, and failures backing off."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.market.streams import MarketStreams, StreamKey, StreamPolicy
from heablcoin_mcp.errors import ExchangeUnavailable

pytestmark = pytest.mark.anyio
FAST = StreamPolicy(stale_after=30, initial_delay=0.01, max_delay=0.05)


class HandFed:
    """A StreamSource whose updates (or errors) a test puts in, one queue per stream."""

    name, simulated = "hand", True

    def __init__(self) -> None:
        self.queues: dict[StreamKey, tuple[Any, Any]] = {}
        self.stopped: list[StreamKey] = []
        self.closed = False

    def _queue(self, key: StreamKey) -> tuple[Any, Any]:
        if key not in self.queues:
            self.queues[key] = anyio.create_memory_object_stream[Any](100)
        return self.queues[key]

    def feed(self, kind: str, symbol: str, item: Any) -> None:
        self._queue(StreamKey(kind, symbol))[0].send_nowait(item)  # type: ignore[arg-type]

    async def next(self, key: StreamKey) -> Any:
        item = await self._queue(key)[1].receive()
        if isinstance(item, Exception):
            raise item
        return item

    async def drop_connection(self, key: StreamKey) -> None:
        return None

    async def resync(self, key: StreamKey) -> None:
        return None

    async def stop(self, key: StreamKey) -> None:
        self.stopped.append(key)

    async def close(self) -> None:
        self.closed = True
        for send, receive in self.queues.values():
            send.close()
            receive.close()


async def test_the_last_subscriber_stops_the_stream_and_subscribing_needs_the_hub_running() -> None:
    source = HandFed()
    hub = MarketStreams(source, SystemClock(), FAST)
    with pytest.raises(ExchangeUnavailable):
        async with hub.subscribe("trades", "BTC/USDT"):
            pass
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        async with hub.subscribe("trades", "BTC/USDT") as first:
            async with hub.subscribe("trades", "BTC/USDT") as second:
                source.feed("trades", "BTC/USDT", ["t1"])
                with anyio.fail_after(5):
                    assert await first.receive() == ["t1"] and await second.receive() == ["t1"]
            assert source.stopped == []  # one subscriber is left
        assert source.stopped == [StreamKey("trades", "BTC/USDT")]
        group.cancel_scope.cancel()
    assert source.closed


async def test_when_the_hub_stops_every_subscriber_sees_the_end() -> None:
    source = HandFed()
    hub = MarketStreams(source, SystemClock(), FAST)
    ended = anyio.Event()

    async def subscriber() -> None:
        async with hub.subscribe("ticker", "ETH/USDT") as updates:
            async for _ in updates:
                pass
        ended.set()

    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as group:
            await group.start(hub.run)
            outer.start_soon(subscriber)
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        with anyio.fail_after(5):
            await ended.wait()


async def test_failures_back_off_and_the_first_update_after_them_counts_a_reconnect() -> None:
    source = HandFed()
    hub = MarketStreams(source, SystemClock(), FAST)
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        async with hub.subscribe("ticker", "ETH/USDT") as updates:
            source.feed("ticker", "ETH/USDT", "first")
            with anyio.fail_after(5):
                await updates.receive()
            for _ in range(3):
                source.feed("ticker", "ETH/USDT", ExchangeUnavailable("gone"))
            await anyio.sleep(0.3)
            metrics = hub.health().metrics
            assert metrics["ticker:ETH/USDT:failures"] == 3 and metrics["ticker:ETH/USDT:connected"] == 0
            assert hub.health().status == "degraded" and "gone" in hub.health().detail
            source.feed("ticker", "ETH/USDT", "back")
            with anyio.fail_after(5):
                assert await updates.receive() == "back"
            metrics = hub.health().metrics
        group.cancel_scope.cancel()
    assert metrics["ticker:ETH/USDT:failures"] == 0 and metrics["ticker:ETH/USDT:reconnects"] == 1


async def test_follow_keeps_one_subscription_per_wanted_symbol() -> None:
    source = HandFed()
    hub = MarketStreams(source, SystemClock(), FAST)
    wanted = {"BTC/USDT"}
    seen: list[tuple[str, Any]] = []

    async def symbols() -> set[str]:
        return set(wanted)

    async def handle(symbol: str, update: Any) -> None:
        seen.append((symbol, update))

    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        group.start_soon(hub.follow, "trades", symbols, handle, 0.02)
        await anyio.sleep(0.1)
        source.feed("trades", "BTC/USDT", ["b"])
        wanted.add("ETH/USDT")
        await anyio.sleep(0.1)
        source.feed("trades", "ETH/USDT", ["e"])
        wanted.discard("BTC/USDT")
        await anyio.sleep(0.1)
        stopped = list(source.stopped)
        group.cancel_scope.cancel()
    assert seen == [("BTC/USDT", ["b"]), ("ETH/USDT", ["e"])]
    assert stopped == [StreamKey("trades", "BTC/USDT")]  # no longer wanted: stopped; ETH/USDT still runs
