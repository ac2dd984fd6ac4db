"""`heablcoin-mcp demo`: a real MCP client session over stdio against an offline server.

The server runs as a subprocess with HEABLCOIN_EXCHANGE=sim and a temporary HEABLCOIN_HOME, so the
tour touches nothing of the user's. Each toolset adds its own step to TOUR.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ResourceUpdatedNotification, TextContent

Step = Callable[[Client, TextIO], Awaitable[None]]
ALERT_WAIT_SECONDS = 90


class Pushed:
    """The resources/updated notifications the server sent this session."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    async def __call__(self, message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, ResourceUpdatedNotification):
            self.uris.append(str(root.params.uri))

    async def next_of(self, uris: dict[str, Any], seen: int, seconds: float) -> tuple[int, str] | None:
        """The first push for one of ``uris`` after the first ``seen`` pushes, waiting up to ``seconds``."""
        with anyio.move_on_after(seconds):
            while True:
                for index in range(seen, len(self.uris)):
                    if self.uris[index] in uris:
                        return index + 1, self.uris[index]
                seen = len(self.uris)
                await anyio.sleep(0.1)
        return None


def server_parameters(home: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "heablcoin_mcp", "serve"],
        env={"HEABLCOIN_HOME": home, "HEABLCOIN_EXCHANGE": "sim", "HEABLCOIN_LOG_LEVEL": "WARNING"},
        cwd=home,  # so no stray ./.env of the user's is read
    )


def structured(result: CallToolResult) -> dict[str, Any]:
    """A result's data: structured content on success, the JSON error envelope in the text on error."""
    if result.is_error and result.content and isinstance(result.content[0], TextContent):
        envelope: dict[str, Any] = json.loads(result.content[0].text)
        return envelope
    return result.structured_content or {}


async def step_tools(client: Client, out: TextIO) -> None:
    tools = (await client.list_tools()).tools
    out.write(f"The server offers {len(tools)} tools:\n")
    for tool in tools:
        hints = tool.annotations
        kind = "read-only" if hints and hints.read_only_hint else "changes state"
        out.write(f"  - {tool.name:<22} {tool.title or ''} ({kind})\n")


async def step_health(client: Client, out: TextIO) -> None:
    health = structured(await client.call_tool("get_system_health", {}))
    out.write(
        f"get_system_health → status {health['status']}, version {health['version']}, "
        f"{health['trading_mode']} trading on {health['exchange']}"
        f"{' (simulated)' if health['simulated_market'] else ''}\n"
    )
    if db := health["database"]:
        out.write(f"  database {db['path']} ({db['journal_mode']}, schema v{db['schema_version']}, "
                  f"{db['size_bytes']} bytes)\n")
    for component in health["components"]:
        out.write(f"  component {component['name']}: {component['status']} {component['detail']}\n")


async def step_config(client: Client, out: TextIO) -> None:
    report = structured(await client.call_tool("validate_config", {}))
    out.write(f"validate_config → {'OK' if report['ok'] else 'FAILED'}: "
              f"{report['errors']} error(s), {report['warnings']} warning(s)\n")
    for check in report["checks"][:4]:
        out.write(f"  [{check['status']}] {check['variable']} = {check['value']}: {check['message']}\n")


async def step_market(client: Client, out: TextIO) -> None:
    ticker = structured(await client.call_tool("get_ticker", {"symbol": "BTC/USDT"}))
    out.write(f"get_ticker BTC/USDT → last {ticker['last']:,.2f} "
              f"(bid {ticker['bid']:,.2f} / ask {ticker['ask']:,.2f}), "
              f"24h {ticker['change_24h_pct']:+.2f}%, simulated={ticker['simulated']}\n")
    candles = structured(await client.call_tool("get_ohlcv", {"symbol": "BTC/USDT", "timeframe": "4h", "limit": 6}))
    out.write("get_ohlcv BTC/USDT 4h, last 6 candles (close):  "
              + "  ".join(f"{row[4]:,.0f}" for row in candles["rows"]) + "\n")
    wrong = structured(await client.call_tool("get_ticker", {"symbol": "BTCUSD"}))["error"]
    out.write(f"get_ticker BTCUSD → {wrong['code']}: {wrong['message']}. {wrong['hint']}\n")


async def step_analysis(client: Client, out: TextIO) -> None:
    analysis = structured(await client.call_tool("market_analysis", {"symbol": "BTC/USDT", "timeframe": "4h"}))
    out.write("market_analysis BTC/USDT 4h →\n")
    for line in analysis["summary"]:
        out.write(f"  {line}\n")
    scan = structured(await client.call_tool("scan_market", {"symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
                                                             "timeframe": "1d"}))
    out.write("scan_market on 1d candles (24h change rolling to now; regime and bias of the daily chart):\n")
    for row in scan["rows"]:
        out.write(f"  {row['symbol']:<9} {row['change_24h_pct']:+6.2f}%  RSI {row['rsi']:5.1f}  "
                  f"{row['regime'] + ' (1d)':<20} {row['bias']}\n")


async def step_trade(client: Client, out: TextIO) -> None:
    size = structured(await client.call_tool("calculate_position_size",
                                             {"symbol": "ETH/USDT", "stop_atr_multiple": 2, "timeframe": "4h"}))
    out.write(f"calculate_position_size ETH/USDT, stop 2 ATR below {size['entry_price']} → buy {size['quantity']} "
              f"ETH (≈ {size['notional']} USDT), losing {size['max_loss_at_stop']} USDT at the stop "
              f"(regime {size['regime']} on 1h, the one every risk rule uses; risk {size['risk_percent']}%)\n")
    for reason in size["reasons"]:
        out.write(f"  shrunk: {reason}\n")
    placed = structured(await client.call_tool("place_order", {
        "symbol": "SOL/USDT", "side": "buy", "amount": 100, "amount_unit": "quote"}))
    out.write(f"place_order 'buy 100 USDT of SOL' → {placed['status']}: {placed['preview']['summary']}\n")
    out.write("  (nothing is sent until the user confirms; this client cannot ask, so it gets a token)\n")
    executed = structured(await client.call_tool("confirm_order", {"token": placed["confirmation_token"]}))
    out.write(f"confirm_order → {executed['message']}\n")
    portfolio = structured(await client.call_tool("get_portfolio", {}))
    out.write(f"get_portfolio → equity {float(portfolio['equity']):,.2f} USDT, cash {float(portfolio['cash']):,.2f}, "
              f"exposure {portfolio['exposure_pct']}%\n")
    for position in portfolio["positions"]:
        out.write(f"  {position['symbol']}: {position['quantity']} at {position['avg_entry']}, "
                  f"unrealised {float(position['unrealized_pnl']):+.4f} USDT\n")


async def step_tasks(client: Client, out: TextIO) -> None:
    fetch = structured(await client.call_tool("publish_enhanced_task", {
        "name": "fetch_data", "payload": {"symbol": "BTC/USDT", "timeframe": "1h", "limit": 48}}))["task"]
    analyse = structured(await client.call_tool("publish_enhanced_task", {
        "name": "market_analysis", "payload": {"symbol": "BTC/USDT", "timeframe": "1h"},
        "depends_on": [fetch["id"]]}))["task"]
    report = structured(await client.call_tool("publish_enhanced_task", {
        "name": "generate_report", "payload": {"title": "BTC hourly"}, "depends_on": [fetch["id"], analyse["id"]]}))
    out.write(f"publish_enhanced_task × 3: fetch_data → market_analysis → generate_report ({report['message']})\n")
    waited = structured(await client.call_tool("wait_for_task", {"task_id": report["task"]["id"], "timeout": 60}))
    task = waited["task"]
    out.write(f"wait_for_task → {task['status']} after {waited['waited_seconds']} s; the report begins:\n")
    for line in task["result"]["markdown"].splitlines()[:6]:
        out.write(f"  {line}\n")


def stream_step(pushed: Pushed) -> Step:
    async def step_stream(client: Client, out: TextIO) -> None:
        async def price(done: float, total: float | None, message: str | None) -> None:
            out.write(f"  progress {done:4.1f} s: {message}\n")

        watched = structured(await client.call_tool("watch_market", {"symbols": ["BTC/USDT"], "seconds": 3},
                                                    progress_callback=price))
        btc = watched["markets"][0]
        out.write(f"watch_market BTC/USDT for 3 s → {btc['updates']} price changes from the "
                  f"{'stream' if watched['streamed'] else 'ticker'}, last {btc['last']:,.2f}\n")
        step = max(0.01, round(btc["last"] * 0.000005, 2))  # a hair either side: the next trades cross one
        alerts = {}
        for side, level in (("above", round(btc["last"] + step, 2)), ("below", round(btc["last"] - step, 2))):
            task = structured(await client.call_tool("publish_enhanced_task", {
                "name": "price_alert", "payload": {"symbol": "BTC/USDT", side: level, "check_every": 3600}}))["task"]
            alerts[f"heablcoin://tasks/{task['id']}"] = (task["id"], f"{side} {level:,.2f}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the SDK marks resources/subscribe as the 2025 era's method
                await client.subscribe_resource(f"heablcoin://tasks/{task['id']}")
        out.write(f"price_alert × 2 on BTC/USDT: {' and '.join(a[1] for a in alerts.values())}, checked hourly, "
                  "subscribed to both tasks\n")
        deadline, seen, fired = anyio.current_time() + ALERT_WAIT_SECONDS, 0, None
        while fired is None and (push := await pushed.next_of(alerts, seen, deadline - anyio.current_time())):
            seen, uri = push  # a push for each change of the task: its first check, then the firing
            task = structured(await client.call_tool("get_enhanced_task", {"task_id": alerts[uri][0]}))
            if task["status"] == "COMPLETED":
                fired = uri
                out.write(f"  push: resources/updated {uri}\n"
                          f"  alert {alerts[uri][1]} → {task['result']['message']}\n")
        for uri, (task_id, _) in alerts.items():
            if uri != fired:
                await client.call_tool("cancel_enhanced_task", {"task_id": task_id})
        if fired is None:
            out.write(f"  neither level traded within {ALERT_WAIT_SECONDS} s; both alerts cancelled\n")

    return step_stream


async def step_bad_input(client: Client, out: TextIO) -> None:
    result = await client.call_tool("get_system_health", {"components": "flux-capacitor"})
    out.write("Nonsense gets a clear error envelope, never a crash:\n")
    out.write(f"  isError={result.is_error} {json.dumps(structured(result))}\n")


TOUR: list[tuple[str, Step]] = [
    ("What can this server do?", step_tools),
    ("Is it healthy, and is it paper trading?", step_health),
    ("How is it configured?", step_config),
    ("What is the market doing?", step_market),
    ("Analyse BTC/USDT on the 4h", step_analysis),
    ("Size, place and confirm a paper order", step_trade),
    ("Hand off a three-step pipeline to the task queue", step_tasks),
    ("What happens with bad input?", step_bad_input),
]


async def tour(out: TextIO) -> None:
    with tempfile.TemporaryDirectory(prefix="heablcoin-demo-") as home:
        out.write(f"heablcoin-mcp demo: starting the server over stdio (offline, simulated market, home {home})\n")
        pushed = Pushed()
        tour_steps = [*TOUR[:-1], ("Watch the market live; an alert fires from the stream", stream_step(pushed)),
                      TOUR[-1]]
        async with Client(server_parameters(home), mode="legacy", read_timeout_seconds=60,
                          message_handler=pushed) as client:
            info = client.server_info
            if info is not None:
                out.write(f"Connected to {info.name} {info.version} (protocol {client.protocol_version})\n")
            for number, (title, step) in enumerate(tour_steps, start=1):
                out.write(f"\n{number}. {title}\n")
                await step(client, out)
        out.write("\nDone. Connect Claude Desktop, Cursor, Windsurf or MCP Inspector as the README shows.\n")


def run_demo(out: TextIO) -> int:
    anyio.run(tour, out)
    return 0
