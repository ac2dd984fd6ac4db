"""A loopback fake of Binance's REST API, so real ccxt request building, signing and parsing run.

Public: spot ``/api/v3/*``, USDⓈ-M futures ``/fapi/v1/*`` and ``/futures/data/*`` in Binance's own
JSON shapes, replaying recorded candles as if they were live (shifted so the newest candle is the
current one). Private (API key header and signature required): account balances, create / fetch /
cancel orders; market orders fill at the last price with a 0.1 % fee. It records every request and
every order it was asked to create, and can be told to fail or stall the next requests.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http import FakeHandler, Loopback

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INTERVAL_MS = {"5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000, "4h": 14_400_000,
               "1d": 86_400_000}


def load_candles(name: str) -> list[list[float]]:
    with (FIXTURES / name).open() as fh:
        return [[float(row[k]) for k in ("timestamp", "open", "high", "low", "close", "volume")]
                for row in csv.DictReader(fh)]



@dataclass
class FakeMarket:
    base: str
    quote: str
    candles: list[list[float]]  # 5m rows [ts, o, h, l, c, v]
    tick: str = "0.0001"
    step: str = "0.1"
    perpetual: bool = False

    @property
    def id(self) -> str:
        return self.base + self.quote


@dataclass
class Fault:
    status: int | None = None
    stall_seconds: float = 0.0
    body: str = "Internal error"
    headers: dict[str, str] = field(default_factory=dict)
    path: str | None = None  # only requests to this path; None = any request
    method: str | None = None


class FakeBinance:
    def __init__(self, markets: list[FakeMarket] | None = None, api_key: str = "fake-key") -> None:
        self.markets = {m.id: m for m in (markets or default_markets())}
        self.api_key = api_key
        self.balances: dict[str, list[float]] = {"USDT": [1000.0, 0.0]}
        self.orders: dict[int, dict[str, Any]] = {}
        self.created: list[dict[str, str]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request, in the order they came
        self._faults: list[Fault] = []
        self.depth_source: Callable[[str, int], dict[str, Any]] | None = None  # the streams fake's book
        self._lock = threading.Lock()
        self._loopback = Loopback(self._handler())

    @property
    def url(self) -> str:
        return self._loopback.origin

    def start(self) -> FakeBinance:
        self._loopback.start_serving()
        return self

    def stop(self) -> None:
        self._loopback.stop()

    def fail_next(self, count: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    # --- request handling ------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.path in (None, path) and fault.method in (None, method):
                    return self._faults.pop(index)
            return None

    def _handler(self) -> type[FakeHandler]:
        fake = self

        class Handler(FakeHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    query.update({k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()})
                fake.requests.append((parts.path, query))
                fake.arrivals.append(time.monotonic())
                fault = fake._take_fault(method, parts.path)
                if fault is not None:
                    time.sleep(fault.stall_seconds)
                    if fault.status is not None:
                        self.send(fault.status, fault.body, fault.headers)
                        return
                if parts.path in PRIVATE:
                    if self.headers.get("X-MBX-APIKEY") != fake.api_key or "signature" not in query:
                        self.send(401, json.dumps({"code": -2015, "msg": "Invalid API-key, IP, or permissions."}),
                                   {"Content-Type": "application/json"})
                        return
                    status, payload = fake.private(method, parts.path, query)
                else:
                    status, payload = fake.route(parts.path, query)
                self.send(status, json.dumps(payload), {"Content-Type": "application/json"})


        return Handler

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        routes = {
            "/api/v3/exchangeInfo": lambda: self.exchange_info(futures=False),
            "/fapi/v1/exchangeInfo": lambda: self.exchange_info(futures=True),
            "/dapi/v1/exchangeInfo": lambda: {"timezone": "UTC", "serverTime": now_ms(), "symbols": []},
            "/sapi/v1/margin/allPairs": lambda: [],
            "/sapi/v1/margin/isolated/allPairs": lambda: [],
            "/api/v3/klines": lambda: self.klines(query),
            "/api/v3/ticker/24hr": lambda: self.ticker(query),
            "/api/v3/depth": lambda: self.depth(query),
            "/api/v3/aggTrades": lambda: self.agg_trades(query),
            "/fapi/v1/premiumIndex": lambda: self.premium_index(query),
            "/fapi/v1/openInterest": lambda: self.open_interest(query),
            "/futures/data/globalLongShortAccountRatio": lambda: self.long_short(query),
        }
        if path not in routes:
            return 404, {"code": -1, "msg": f"fake binance has no {path}"}
        market_id = query.get("symbol")
        if market_id is not None and market_id not in self.markets:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        return 200, routes[path]()

    # --- private endpoints -----------------------------------------------------------------------

    def private(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/sapi/v1/capital/config/getall":
            return 200, []
        if path == "/api/v3/account":
            return 200, {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "accountType": "SPOT",
                         "balances": [{"asset": a, "free": f"{free:.8f}", "locked": f"{locked:.8f}"}
                                      for a, (free, locked) in self.balances.items()], "permissions": ["SPOT"]}
        if path == "/api/v3/openOrders":
            return 200, [o for o in self.orders.values() if o["status"] == "NEW"]
        order_id = int(query.get("orderId", 0))
        if method == "POST":
            return self.create_order(query)
        if order_id not in self.orders:
            return 400, {"code": -2013, "msg": "Order does not exist."}
        if method == "DELETE":
            self.orders[order_id]["status"] = "CANCELED"
        return 200, self.orders[order_id]

    def create_order(self, query: dict[str, str]) -> tuple[int, Any]:
        self.created.append(dict(query))
        market = self.markets[query["symbol"]]
        quantity = float(query["quantity"])
        last = self.live_candles(market.id)[-1][4]
        order_id = len(self.orders) + 1
        order: dict[str, Any] = {
            "symbol": market.id, "orderId": order_id, "orderListId": -1,
            "clientOrderId": query.get("newClientOrderId", f"fake{order_id}"), "transactTime": now_ms(),
            "price": query.get("price", "0.00000000"), "origQty": f"{quantity:.8f}", "executedQty": "0.00000000",
            "cummulativeQuoteQty": "0.00000000", "status": "NEW", "timeInForce": query.get("timeInForce", "GTC"),
            "type": query["type"], "side": query["side"], "fills": [],
        }
        if query["type"] == "MARKET":
            cost, fee = quantity * last, quantity * last * 0.001
            quote = self.balances.setdefault(market.quote, [0.0, 0.0])
            base = self.balances.setdefault(market.base, [0.0, 0.0])
            if query["side"] == "BUY":
                if quote[0] < cost + fee:
                    return 400, {"code": -2010, "msg": "Account has insufficient balance for requested action."}
                quote[0] -= cost + fee
                base[0] += quantity
            else:
                if base[0] < quantity:
                    return 400, {"code": -2010, "msg": "Account has insufficient balance for requested action."}
                base[0] -= quantity
                quote[0] += cost - fee
            order.update(status="FILLED", executedQty=f"{quantity:.8f}", cummulativeQuoteQty=f"{cost:.8f}",
                         fills=[{"price": f"{last:.8f}", "qty": f"{quantity:.8f}", "commission": f"{fee:.8f}",
                                 "commissionAsset": market.quote, "tradeId": order_id}])
        self.orders[order_id] = order
        return 200, order

    # --- Binance payloads ------------------------------------------------------------------------

    def exchange_info(self, futures: bool) -> dict[str, Any]:
        symbols = []
        for m in self.markets.values():
            if futures and not m.perpetual:
                continue
            filters = [
                {"filterType": "PRICE_FILTER", "minPrice": m.tick, "maxPrice": "1000000", "tickSize": m.tick},
                {"filterType": "LOT_SIZE", "minQty": m.step, "maxQty": "9000000", "stepSize": m.step},
                {"filterType": "NOTIONAL" if not futures else "MIN_NOTIONAL", "minNotional": "5", "notional": "5"},
            ]
            entry: dict[str, Any] = {
                "symbol": m.id, "status": "TRADING", "baseAsset": m.base, "quoteAsset": m.quote,
                "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET", "STOP_LOSS_LIMIT"], "filters": filters,
            }
            if futures:
                entry.update(pair=m.id, contractType="PERPETUAL", deliveryDate=4133404800000,
                             onboardDate=1569398400000, marginAsset=m.quote, pricePrecision=4, quantityPrecision=1,
                             underlyingType="COIN", timeInForce=["GTC"])
            else:
                entry.update(isSpotTradingAllowed=True, isMarginTradingAllowed=False, permissions=[],
                             permissionSets=[["SPOT"]])
            symbols.append(entry)
        return {"timezone": "UTC", "serverTime": now_ms(), "rateLimits": [], "symbols": symbols}

    def live_candles(self, market_id: str) -> list[list[float]]:
        """The recorded 5m candles, shifted so the last one is the current 5m candle."""
        rows = self.markets[market_id].candles
        shift = (now_ms() // 300_000) * 300_000 - int(rows[-1][0])
        return [[row[0] + shift, *row[1:]] for row in rows]

    def klines(self, query: dict[str, str]) -> list[list[Any]]:
        step = INTERVAL_MS[query.get("interval", "5m")]
        rows = aggregate(self.live_candles(query["symbol"]), step)
        limit = min(int(query.get("limit", 500)), 1000)
        start = int(query.get("startTime", 0))
        rows = [r for r in rows if r[0] >= start][:limit] if start else rows[-limit:]
        return [[int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), int(r[0]) + step - 1,
                 str(r[4] * r[5]), 100, "0", "0", "0"] for r in rows]

    def ticker(self, query: dict[str, str]) -> dict[str, Any]:
        rows = self.live_candles(query["symbol"])[-288:]
        last, first = rows[-1], rows[0]
        return {
            "symbol": query["symbol"], "priceChange": str(last[4] - first[1]),
            "priceChangePercent": str(round((last[4] / first[1] - 1) * 100, 3)), "weightedAvgPrice": str(last[4]),
            "prevClosePrice": str(first[1]), "lastPrice": str(last[4]), "lastQty": "1",
            "bidPrice": str(last[4] * 0.9999), "bidQty": "10", "askPrice": str(last[4] * 1.0001), "askQty": "10",
            "openPrice": str(first[1]),
            "highPrice": str(max(r[2] for r in rows)), "lowPrice": str(min(r[3] for r in rows)),
            "volume": str(sum(r[5] for r in rows)), "quoteVolume": str(sum(r[5] * r[4] for r in rows)),
            "openTime": int(first[0]), "closeTime": now_ms(), "firstId": 1, "lastId": 100, "count": 100,
        }

    def depth(self, query: dict[str, str]) -> dict[str, Any]:
        if self.depth_source is not None:
            return self.depth_source(query["symbol"], int(query.get("limit", 100)))
        last = self.live_candles(query["symbol"])[-1][4]
        limit = int(query.get("limit", 100))
        return {
            "lastUpdateId": 1,
            "bids": [[f"{last * (1 - 0.0001 * (i + 1)):.6f}", f"{10 + i}"] for i in range(limit)],
            "asks": [[f"{last * (1 + 0.0001 * (i + 1)):.6f}", f"{5 + i}"] for i in range(limit)],
        }

    def agg_trades(self, query: dict[str, str]) -> list[dict[str, Any]]:
        last = self.live_candles(query["symbol"])[-1][4]
        limit = int(query.get("limit", 500))
        start = now_ms() - limit * 1000
        return [{"a": i, "p": str(last), "q": "1.5", "f": i, "l": i, "T": start + i * 1000, "m": i % 2 == 0,
                 "M": True} for i in range(limit)]

    def premium_index(self, query: dict[str, str]) -> dict[str, Any]:
        last = self.live_candles(query["symbol"])[-1][4]
        return {"symbol": query["symbol"], "markPrice": str(last), "indexPrice": str(last),
                "estimatedSettlePrice": str(last), "lastFundingRate": "0.00012", "interestRate": "0.0001",
                "nextFundingTime": (now_ms() // 28_800_000 + 1) * 28_800_000, "time": now_ms()}

    def open_interest(self, query: dict[str, str]) -> dict[str, Any]:
        return {"openInterest": "123456.7", "symbol": query["symbol"], "time": now_ms()}

    def long_short(self, query: dict[str, str]) -> list[dict[str, Any]]:
        return [{"symbol": query["symbol"], "longShortRatio": "1.8500", "longAccount": "0.6491",
                 "shortAccount": "0.3509", "timestamp": now_ms() - 300_000}]


def aggregate(rows: list[list[float]], step: int) -> list[list[float]]:
    """5m candles rolled up into ``step`` ms candles (the recording is 5m; larger intervals are built)."""
    if step == 300_000:
        return rows
    buckets: dict[int, list[list[float]]] = {}
    for row in rows:
        buckets.setdefault(int(row[0]) // step * step, []).append(row)
    return [[float(start), group[0][1], max(r[2] for r in group), min(r[3] for r in group), group[-1][4],
             sum(r[5] for r in group)] for start, group in sorted(buckets.items())]


PRIVATE = {"/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/sapi/v1/capital/config/getall"}


def now_ms() -> int:
    return int(time.time() * 1000)


def default_markets() -> list[FakeMarket]:
    return [
        FakeMarket("XRP", "USDT", load_candles("xrp_usdt_perp_5m.csv"), perpetual=True),
        FakeMarket("ETH", "BTC", load_candles("eth_btc_5m.csv"), tick="0.000001", step="0.001"),
    ]


@contextmanager
def running_fake_binance(markets: list[FakeMarket] | None = None) -> Iterator[FakeBinance]:
    fake = FakeBinance(markets).start()
    try:
        yield fake
    finally:
        fake.stop()
