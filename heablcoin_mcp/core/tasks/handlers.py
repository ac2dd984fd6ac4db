"""Task handlers: registered by name with a typed payload model.

A handler is ``async (payload, ctx) -> result`` (a JSON-able value). It may return ``Later`` to be
run again after a while without spending an attempt (a price alert that has not fired yet).
Handlers must be idempotent: delivery is at-least-once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from heablcoin_mcp.core.tasks.alerts import streamed_evidence
from heablcoin_mcp.core.tasks.queue import TaskQueue, TaskView
from heablcoin_mcp.errors import InvalidInput


@dataclass(frozen=True)
class Later:
    after_seconds: float
    note: str


@dataclass
class TaskContext:
    task: TaskView
    queue: TaskQueue
    worker_id: str

    def parent_results(self) -> dict[str, Any]:
        return self.queue.parent_results(self.task.id)


HandlerFn = Callable[[Any, TaskContext], Awaitable[Any]]


@dataclass(frozen=True)
class Handler:
    name: str
    payload: type[BaseModel]
    fn: HandlerFn
    description: str


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, payload: type[BaseModel], fn: HandlerFn, description: str) -> None:
        self._handlers[name] = Handler(name, payload, fn, description)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def get(self, name: str) -> Handler:
        """Raises InvalidInput listing the known handler names."""
        if name not in self._handlers:
            raise InvalidInput(f"unknown task handler {name!r}", hint=f"Known handlers: {', '.join(self.names())}.")
        return self._handlers[name]

    def payload(self, name: str, payload: object) -> BaseModel:
        """Raises InvalidInput when the payload is not an object or does not fit the handler."""
        if not isinstance(payload, dict):
            raise InvalidInput("payload must be a JSON object", hint="e.g. {\"symbol\": \"BTC/USDT\"}")
        handler = self.get(name)
        try:
            return handler.payload.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors())
            accepted = ", ".join(handler.payload.model_fields)
            raise InvalidInput(f"invalid payload for {name}: {problems}",
                               hint=f"{name} accepts: {accepted}.") from None


# --- payloads ----------------------------------------------------------------------------------


class Payload(BaseModel):
    """What the user asked for is what is stored: a field a handler does not know is refused, not dropped."""

    model_config = ConfigDict(extra="forbid")


class SymbolTimeframe(Payload):
    symbol: str = Field(min_length=1, max_length=40)
    timeframe: str = "1h"


class FetchData(SymbolTimeframe):
    limit: int = Field(100, ge=1, le=1000)


class Report(Payload):
    title: str = Field("Market report", max_length=200)
    symbols: list[str] = Field(default_factory=list, max_length=30,
                               description="markets to analyse for the report, besides the parents' results")
    timeframe: str = "1h"


class PriceAlert(Payload):
    symbol: str = Field(min_length=1, max_length=40)
    above: float | None = Field(None, gt=0)
    below: float | None = Field(None, gt=0)
    check_every: float = Field(60.0, ge=1, le=86400, description="seconds between checks")

    @model_validator(mode="after")
    def _one_side(self) -> PriceAlert:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        return self


class Sleep(Payload):
    seconds: float = Field(ge=0, le=86400)


class AiAnalysis(SymbolTimeframe):
    question: str = Field("Comment on this market.", max_length=2000)


def builtin_handlers(app: Any) -> HandlerRegistry:
    """The standard handlers, bound to the App's services."""
    registry = HandlerRegistry()

    async def market_analysis(p: SymbolTimeframe, ctx: TaskContext) -> dict[str, Any]:
        analysis = await app.analysis.analyse(p.symbol, p.timeframe)
        return {"symbol": analysis.symbol, "timeframe": analysis.timeframe, "as_of": analysis.as_of,
                "simulated": analysis.simulated, "last": analysis.last, "bias": analysis.signals.bias,
                "confidence": analysis.signals.confidence, "regime": analysis.regime.regime,
                "summary": analysis.summary}

    async def fetch_data(p: FetchData, ctx: TaskContext) -> dict[str, Any]:
        report = await app.market.ohlcv(p.symbol, p.timeframe, p.limit)
        return report.model_dump(mode="json")

    async def generate_report(p: Report, ctx: TaskContext) -> dict[str, Any]:
        parents = ctx.parent_results()
        lines = [f"# {p.title}"]
        for symbol in p.symbols:
            analysis = await app.analysis.analyse(symbol, p.timeframe)
            lines.append(f"\n## {analysis.symbol} {analysis.timeframe}")
            lines += [f"- {line}" for line in analysis.summary]
        for task_id, parent in parents.items():
            result = parent["result"] or {}
            lines.append(f"\n## {parent['name']} ({task_id})")
            if isinstance(result, dict) and result.get("summary"):
                lines += [f"- {line}" for line in result["summary"]]
            elif isinstance(result, dict) and "rows" in result:
                rows = result["rows"]
                lines.append(f"- {result.get('symbol')} {result.get('timeframe')}: {len(rows)} candles, last close "
                             f"{rows[-1][4] if rows else 'n/a'}")
            else:
                lines.append(f"- {str(result)[:500]}")
        return {"title": p.title, "sources": [*p.symbols, *parents], "markdown": "\n".join(lines)}

    async def price_alert(p: PriceAlert, ctx: TaskContext) -> Any:
        def hit(price: float) -> bool:
            return (p.above is not None and price >= p.above) or (p.below is not None and price <= p.below)

        streamed = streamed_evidence(ctx.task.result)
        if streamed is not None and hit(streamed[0]):
            last, source, at = streamed[0], "stream", streamed[1] / 1000
        else:
            ticker = await app.market.ticker(p.symbol)
            last, source, at = ticker.last, "check", ticker.timestamp / 1000
        if not hit(last):
            return Later(p.check_every, f"{p.symbol} at {last}, waiting for "
                                        f"{'>= ' + str(p.above) if p.above else '<= ' + str(p.below)}")
        side = f"above {p.above}" if p.above is not None else f"below {p.below}"
        how = "a streamed trade" if source == "stream" else "the periodic check"
        return {"fired": True, "symbol": p.symbol, "price": last, "condition": {"above": p.above, "below": p.below},
                "source": source, "traded_at": at,
                "message": f"{p.symbol} traded at {last}: alert {side} (seen by {how})"}

    async def system_sleep(p: Sleep, ctx: TaskContext) -> dict[str, Any]:
        await anyio.sleep(p.seconds)
        return {"slept": p.seconds, "worker": ctx.worker_id}

    async def ai_analysis(p: AiAnalysis, ctx: TaskContext) -> dict[str, Any]:
        analysis = await app.analysis.analyse(p.symbol, p.timeframe)
        reply = await app.ai.call(f"{p.question}\n\nMarket analysis (JSON):\n{analysis.model_dump_json()}",
                                  system="Describe the market plainly; never give financial advice.", max_tokens=600)
        return {"symbol": analysis.symbol, "commentary": reply.text, "endpoint": reply.endpoint,
                "summary": analysis.summary}

    registry.register("market_analysis", SymbolTimeframe, market_analysis, "full analysis of symbol/timeframe")
    registry.register("fetch_data", FetchData, fetch_data, "fetch candles (symbol, timeframe, limit) into the result")
    registry.register("generate_report", Report, generate_report, "a markdown report from its parents' results")
    registry.register("price_alert", PriceAlert, price_alert, "fires once when the price crosses above/below")
    registry.register("system.sleep", Sleep, system_sleep, "sleep N seconds (timeouts, ops checks)")
    registry.register("ai_analysis", AiAnalysis, ai_analysis, "LLM commentary on a market analysis")
    return registry
