"""Toolset `market`: public market data (read-only) from the configured exchange or the simulator."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.market.service import (
    DerivativesReport,
    MarketsReport,
    OhlcvReport,
    OrderBookReport,
    TickerReport,
    parse_since,
)
from heablcoin_mcp.core.market.watch import WatchReport, watch
from heablcoin_mcp.tools._types import MARKET_READ, NameList, Symbol, Timeframe


def register(server: MCPServer, app: App) -> None:
    market = app.market

    @server.tool(title="Ticker", annotations=MARKET_READ)
    async def get_ticker(symbol: Symbol) -> TickerReport:
        """Latest price of one market: last, bid, ask, spread (absolute and %), 24h high/low/open,
        24h change in %, and 24h volume in base and quote units. Check `simulated` before quoting
        prices to the user. Use get_ohlcv for history and get_order_book for depth."""
        return await market.ticker(symbol)

    @server.tool(title="Candles (OHLCV)", annotations=MARKET_READ)
    async def get_ohlcv(
        symbol: Symbol,
        timeframe: Timeframe = "1h",
        limit: Annotated[int, Field(description="Number of candles, newest last (1-300); page back with since.",
                                    ge=1, le=300)] = 100,
        since: Annotated[
            int | str | None,
            Field(description="Start time: ISO-8601 ('2024-05-01T00:00:00Z') or ms since the epoch. "
                              "Omit for the most recent candles."),
        ] = None,
    ) -> OhlcvReport:
        """Price history as compact rows [timestamp_ms, open, high, low, close, volume], oldest first.
        `last_candle_open` says whether the newest row is still forming. For indicators and a
        written analysis use the analysis tools instead of computing from these rows."""
        return await market.ohlcv(symbol, timeframe, limit, parse_since(since))

    @server.tool(title="Order book", annotations=MARKET_READ)
    async def get_order_book(
        symbol: Symbol,
        depth: Annotated[int, Field(description="Price levels per side (1-100).", ge=1, le=100)] = 20,
    ) -> OrderBookReport:
        """Bids and asks as [price, amount] (best first) with mid price, spread, the summed depth
        on each side and the depth imbalance (-1 = all asks, +1 = all bids). Use it to judge
        liquidity and likely slippage before a market order."""
        return await market.order_book(symbol, depth)

    @server.tool(title="Derivatives data", annotations=MARKET_READ)
    async def get_derivatives_data(symbol: Symbol) -> DerivativesReport:
        """Perpetual-swap figures for a symbol: funding rate (per 8h interval, as a fraction) and
        next funding time, mark price, open interest (contracts and quote value) and the
        long/short account ratio. A spot symbol such as BTC/USDT is looked up as its USDT
        perpetual. Figures the exchange does not publish are null and explained in `unavailable`."""
        return await market.derivatives(symbol)

    @server.tool(title="List markets", annotations=MARKET_READ)
    async def list_markets(
        quote: Annotated[str | None, Field(description="Only this quote currency, e.g. 'USDT'.")] = None,
        search: Annotated[str | None, Field(description="Text in the symbol or base currency, e.g. 'BTC'.")] = None,
        limit: Annotated[int, Field(description="Maximum markets returned (1-100); narrow with quote or "
                                                "search.", ge=1, le=100)] = 50,
    ) -> MarketsReport:
        """Markets the exchange trades, with price tick, amount step, minimum amount and notional,
        and maker/taker fees. Use it to find the exact symbol before other tools, or to explain an
        order-size minimum. `total` counts all matches before the limit."""
        return await market.list_markets(quote, search, limit)

    @server.tool(title="Watch market", annotations=MARKET_READ)
    async def watch_market(
        symbols: Annotated[NameList, Field(description="1-10 markets, e.g. ['BTC/USDT', 'ETH/USDT'].")],
        ctx: Context,
        seconds: Annotated[float, Field(description="How long to watch, 1-600 s.", gt=0, le=600)] = 60,
    ) -> WatchReport:
        """Watch live prices for a while: each change is sent as a progress notification ("BTC/USDT
        65012.5", at most one a second per market) and the result sums up first, last, high, low
        and change per market. Clients that subscribe to resources can subscribe to
        heablcoin://market/{market}/ticker instead."""
        async def progress(symbol: str, price: float, elapsed: float) -> None:
            await ctx.report_progress(elapsed, seconds, f"{symbol} {price}")

        return await watch(market, symbols, seconds, progress)

    @server.resource("heablcoin://market/{market}/ticker", name="ticker", title="Live ticker of a market",
                     mime_type="application/json")
    async def ticker_resource(market: str) -> str:
        """One market's ticker (e.g. heablcoin://market/BTC-USDT/ticker), from the stream when one runs.
        Subscribe to hear of each price change, at most once a second."""
        return (await app.market.ticker(market)).model_dump_json()
