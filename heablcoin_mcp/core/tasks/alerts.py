"""Price alerts fired by streamed trades: the moment a trade crosses a waiting alert's level.

Waiting alerts are read from the queue (so an alert published by any process counts); each symbol
with one is followed on the trade stream. A crossing trade printed after the alert was made wakes
its task with the trade as evidence, and the worker fires it at once instead of at its next check.
Without streams the alert still fires from its periodic check (``check_every``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from heablcoin_mcp.core.market.models import Trade
from heablcoin_mcp.core.market.service import MarketService
from heablcoin_mcp.core.market.streams import MarketStreams
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.tasks.queue import TaskQueue
from heablcoin_mcp.errors import HeablError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Waiting:
    task_id: str
    above: float | None
    below: float | None
    since_ms: float

    def crossed_by(self, trade: Trade) -> bool:
        if trade.timestamp < self.since_ms:
            return False
        return (self.above is not None and trade.price >= self.above) or (
            self.below is not None and trade.price <= self.below)


def streamed_evidence(result: object) -> tuple[float, int] | None:
    """The crossing trade (price, ms) a stream woke an alert with, if it did."""
    if isinstance(result, dict) and isinstance(result.get("streamed"), dict):
        trade = result["streamed"]
        return float(trade["price"]), int(trade["timestamp"])
    return None


class StreamedAlerts:
    def __init__(self, db: Storage, queue: TaskQueue, market: MarketService, streams: MarketStreams) -> None:
        self.db, self.queue, self.market, self.streams = db, queue, market, streams
        self._waiting: dict[str, list[Waiting]] = {}

    async def run(self, refresh: float) -> None:
        await self.streams.follow("trades", self._symbols, self._on_trades, refresh)

    async def _symbols(self) -> set[str]:
        waiting: dict[str, list[Waiting]] = {}
        for task_id, payload, created_at in self.db.conn.execute(
                "SELECT id, payload, created_at FROM tasks WHERE name = 'price_alert' AND status = 'PENDING'"):
            alert = json.loads(payload)
            try:
                symbol = (await self.market.market(alert["symbol"])).symbol
            except HeablError:
                continue  # its own check reports the unknown symbol
            waiting.setdefault(symbol, []).append(
                Waiting(task_id, alert.get("above"), alert.get("below"), created_at * 1000))
        self._waiting = waiting
        return set(waiting)

    async def _on_trades(self, symbol: str, trades: list[Trade]) -> None:
        for alert in list(self._waiting.get(symbol, ())):
            crossing = next((t for t in trades if alert.crossed_by(t)), None)
            if crossing is None:
                continue
            self._waiting[symbol].remove(alert)
            evidence = {"streamed": {"price": crossing.price, "timestamp": crossing.timestamp}}
            if self.queue.wake(alert.task_id, evidence):
                log.info("price alert %s woken by a streamed %s trade at %s", alert.task_id, symbol, crossing.price)
