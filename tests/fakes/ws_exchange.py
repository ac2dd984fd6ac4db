"""A loopback fake of Binance's spot websocket market streams, so real ccxt.pro connects, subscribes,
keeps alive, parses and keeps order books.

Raw streams at ``/stream/ws[/<n>]`` (ccxt's spot URL is ``wss://stream.binance.com:9443/ws``; the
``/stream`` prefix keeps ccxt's spot-URL test true): ``SUBSCRIBE`` / ``UNSUBSCRIBE`` answered as
Binance does, then ``trade`` / ``aggTrade``, ``24hrTicker`` / ``24hrMiniTicker``, ``kline`` and
``depthUpdate`` (U/u update ids) events in Binance's shapes. Once a test sets a book, the REST fake
serves depth snapshots from it, so a snapshot and the updates after it agree. Faults: drop every
connection, go silent (pongs still answered), skip an update id, send an update that leaves a
crossed book (the Binance stream has no checksum field: this is its corrupt-book equivalent),
refuse the next N connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.exchange import FakeBinance, running_fake_binance


class FakeBinanceStreams:
    def __init__(self, rest: FakeBinance) -> None:
        self.rest = rest
        self.subscriptions: list[str] = []  # every SUBSCRIBE param, in arrival order
        self.connections = 0  # websocket upgrades accepted
        self.refused = 0
        self.snapshots = 0
        self._refuse = 0
        self._sockets: dict[web.WebSocketResponse, set[str]] = {}
        self._silent: set[web.WebSocketResponse] = set()
        self._books: dict[str, dict[str, Any]] = {}
        self._trade_id = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def start(self) -> FakeBinanceStreams:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._call(self._close_all(1001))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # --- what a test does ------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"fake binance streams: condition not met in {timeout} s "
                                     f"(subscriptions {self.subscriptions}, connections {self.connections})")
            time.sleep(0.01)

    def subscribed(self, stream: str) -> int:
        return self.subscriptions.count(stream)

    def trade(self, market_id: str, price: float, amount: float, *, at_ms: int | None = None,
              buyer_is_maker: bool = False) -> None:
        with self._lock:
            self._trade_id += 1
            trade_id = self._trade_id
        at = at_ms if at_ms is not None else int(time.time() * 1000)
        self._send(f"{market_id.lower()}@trade", {"e": "trade", "E": at, "s": market_id, "t": trade_id,
                                                   "p": f"{price}", "q": f"{amount}", "T": at,
                                                   "m": buyer_is_maker, "M": True})
        self._send(f"{market_id.lower()}@aggTrade", {"e": "aggTrade", "E": at, "s": market_id, "a": trade_id,
                                                      "p": f"{price}", "q": f"{amount}", "f": trade_id,
                                                      "l": trade_id, "T": at, "m": buyer_is_maker, "M": True})

    def ticker(self, market_id: str, last: float, *, spread: float = 0.0002) -> None:
        now = int(time.time() * 1000)
        self._send(f"{market_id.lower()}@ticker", {
            "e": "24hrTicker", "E": now, "s": market_id, "p": "0", "P": "0", "w": f"{last}", "x": f"{last}",
            "c": f"{last}", "Q": "1", "b": f"{last * (1 - spread / 2)}", "B": "5", "a": f"{last * (1 + spread / 2)}",
            "A": "5", "o": f"{last}", "h": f"{last}", "l": f"{last}", "v": "1000", "q": f"{1000 * last}",
            "O": now - 86_400_000, "C": now, "F": 1, "L": 100, "n": 100})
        self._send(f"{market_id.lower()}@miniTicker", {  # what ccxt's watch_ticker subscribes to
            "e": "24hrMiniTicker", "E": now, "s": market_id, "c": f"{last}", "o": f"{last}", "h": f"{last}",
            "l": f"{last}", "v": "1000", "q": f"{1000 * last}"})

    def kline(self, market_id: str, start_ms: int, ohlcv: tuple[float, float, float, float, float]) -> None:
        """The forming 1m candle (``x`` false): open, high, low, close, volume."""
        o, h, low, c, v = ohlcv
        self._send(f"{market_id.lower()}@kline_1m", {
            "e": "kline", "E": start_ms + 30_000, "s": market_id, "k": {
                "t": start_ms, "T": start_ms + 59_999, "s": market_id, "i": "1m", "f": 1, "L": 2, "o": f"{o}",
                "c": f"{c}", "h": f"{h}", "l": f"{low}", "v": f"{v}", "n": 2, "x": False, "q": f"{v * c}",
                "V": "0", "Q": "0", "B": "0"}})

    def set_book(self, market_id: str, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        with self._lock:
            self._books[market_id] = {"bids": dict(bids), "asks": dict(asks), "update_id": 1000}
        self.rest.depth_source = self.snapshot  # snapshots now come from the streamed book

    def depth(self, market_id: str, bids: list[tuple[float, float]] = (), asks: list[tuple[float, float]] = (), *,
              skip_id: bool = False, corrupt: bool = False) -> None:
        """One incremental update (amount 0 removes a level). ``skip_id`` leaves one update id out;
        ``corrupt`` sends a bid above the best ask that the true book never had."""
        with self._lock:
            book = self._books[market_id]
            first = book["update_id"] + (2 if skip_id else 1)
            book["update_id"] = first
            for side, levels in (("bids", bids), ("asks", asks)):
                for price, amount in levels:
                    if amount:
                        book[side][price] = amount
                    else:
                        book[side].pop(price, None)
            sent_bids = list(bids)
            if corrupt:
                sent_bids.append((min(book["asks"]) * 1.01, 1.0))
        self._send(f"{market_id.lower()}@depth@100ms", {
            "e": "depthUpdate", "E": int(time.time() * 1000), "s": market_id, "U": first, "u": first,
            "b": [[f"{p}", f"{a}"] for p, a in sent_bids], "a": [[f"{p}", f"{a}"] for p, a in asks]})

    def snapshot(self, market_id: str, limit: int) -> dict[str, Any]:
        with self._lock:
            self.snapshots += 1
            book = self._books[market_id]
            return {"lastUpdateId": book["update_id"],
                    "bids": [[f"{p}", f"{a}"] for p, a in sorted(book["bids"].items(), reverse=True)[:limit]],
                    "asks": [[f"{p}", f"{a}"] for p, a in sorted(book["asks"].items())[:limit]]}

    def true_book(self, market_id: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        with self._lock:
            book = self._books[market_id]
            return sorted(book["bids"].items(), reverse=True), sorted(book["asks"].items())

    def drop_connections(self) -> None:
        self._call(self._close_all(1006))

    def go_silent(self) -> None:
        """The connections open now stop sending events; they still answer pings. New ones are fine."""
        with self._lock:
            self._silent.update(self._sockets)

    def refuse_next(self, count: int) -> None:
        with self._lock:
            self._refuse += count

    # --- the server ------------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/stream/ws", self._socket)
        app.router.add_get("/stream/ws/{index}", self._socket)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            if self._refuse > 0:
                self._refuse -= 1
                self.refused += 1
                return web.Response(status=503, text="Service Unavailable")
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        with self._lock:
            self.connections += 1
            self._sockets[socket] = set()
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                request_body = json.loads(message.data)
                params = request_body.get("params") or []
                with self._lock:
                    if request_body.get("method") == "SUBSCRIBE":
                        self._sockets[socket].update(params)
                        self.subscriptions.extend(params)
                    elif request_body.get("method") == "UNSUBSCRIBE":
                        self._sockets[socket].difference_update(params)
                await socket.send_str(json.dumps({"result": None, "id": request_body.get("id")}))
        finally:
            with self._lock:
                self._sockets.pop(socket, None)
                self._silent.discard(socket)
        return socket

    def _send(self, stream: str, event: dict[str, Any]) -> None:
        text = json.dumps(event)
        with self._lock:
            targets = [s for s, streams in self._sockets.items() if stream in streams and s not in self._silent]
        for socket in targets:
            self._call(socket.send_str(text))

    async def _close_all(self, code: int) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for socket in sockets:
            await socket.close(code=code)

    def _call(self, coroutine: Any) -> None:
        with contextlib.suppress(ConnectionResetError):  # the client went away meanwhile
            asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)


@contextmanager
def running_fake_streams() -> Iterator[FakeBinanceStreams]:
    """The websocket fake and the REST fake it serves snapshots and markets through, both stopped after."""
    with running_fake_binance() as rest:
        streams = FakeBinanceStreams(rest).start()
        try:
            yield streams
        finally:
            streams.stop()
