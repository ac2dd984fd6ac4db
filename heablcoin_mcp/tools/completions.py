"""completion/complete: suggestions for prompt and resource-template arguments, by argument name.

One rule for both kinds of reference: an argument called ``symbol`` completes to the configured
market's symbols wherever it appears. Matching ignores case and the separator (``btcu`` finds
BTC/USDT); a comma-separated ``symbols`` list completes its last item.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from mcp.types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from heablcoin_mcp.app import App

MAX_VALUES = 100  # the spec's cap per response


def register(server: MCPServer, app: App) -> None:
    async def symbols() -> list[str]:
        return sorted(await app.market.all_markets())

    async def markets() -> list[str]:  # a symbol as it fits in a URI: BTC-USDT
        return [symbol.replace("/", "-") for symbol in await symbols()]

    async def timeframes() -> list[str]:
        return await app.market.timeframes()

    async def accounts() -> list[str]:
        return [a.name for a in app.accounts.list()]

    async def order_ids() -> list[str]:
        return [o.id for o in app.records.orders("all", limit=MAX_VALUES)]

    async def task_ids() -> list[str]:
        return [t.id for t in app.queue.list(limit=MAX_VALUES)]

    async def sides() -> list[str]:
        return ["buy", "sell"]

    sources: dict[str, Callable[[], Awaitable[list[str]]]] = {
        "symbol": symbols, "symbols": symbols, "market": markets, "timeframe": timeframes, "account": accounts,
        "order_id": order_ids, "task_id": task_ids, "side": sides,
    }

    @server.completion()
    async def complete(ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument,
                       context: CompletionContext | None) -> Completion | None:
        source = sources.get(argument.name)
        if source is None:
            return None
        typed, prefix = argument.value, ""
        if argument.name == "symbols" and "," in typed:
            head, typed = typed.rsplit(",", 1)
            prefix = head.rstrip() + ", "
        found = [prefix + value for value in await source() if matches(value, typed)]
        return Completion(values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES)


def squeeze(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def matches(value: str, typed: str) -> bool:
    return squeeze(value).startswith(squeeze(typed))
