"""Benchmarks: ratios against references measured in the same run.

    python tools/bench/run.py [--runs N] [--only foundation|analysis|ai|tasks|storage|streams]
    (pip install -e '.[bench]')

1. Cold start: spawn the server over stdio, initialize, tools/list, exit — heablcoin-mcp versus a
   minimal MCPServer with one tool (the reference).
2. Warm tools/list and get_system_health in-process, versus the minimal server's tools/list and its
   one-line `ping` tool (so the ratio is the cost of our envelope plus the health queries).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # so `tools.bench` and `tests.fakes` import

MINIMAL_SERVER = """
from mcp.server.mcpserver import MCPServer
server = MCPServer("minimal")

@server.tool()
def ping() -> str:
    return "pong"

server.run()
"""


def env_for(home: str, exchange: str) -> dict[str, str]:
    # tools/list never touches the network, so the default ccxt exchange works offline here
    return {"HEABLCOIN_HOME": home, "HEABLCOIN_EXCHANGE": exchange, "HEABLCOIN_LOG_LEVEL": "WARNING"}


async def cold_start(params: StdioServerParameters) -> tuple[float, float]:
    """(spawn → tools/list answered, spawn → the process gone after stdin closed)."""
    started = time.perf_counter()
    async with Client(params, mode="legacy") as client:
        await client.list_tools()
        listed = time.perf_counter() - started
    return listed, time.perf_counter() - started


async def timed(fn: Callable[[], Awaitable[object]], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def foundation_rows(runs: int) -> list[tuple[str, float, str, float]]:
    from heablcoin_mcp.app import App
    from heablcoin_mcp.config import Settings
    from heablcoin_mcp.server import build_server

    with tempfile.TemporaryDirectory() as home:
        script = Path(home) / "minimal.py"
        script.write_text(MINIMAL_SERVER)
        ours = StdioServerParameters(command=sys.executable, args=["-m", "heablcoin_mcp"],
                                     env=env_for(home, "binance"))
        ours_sim = StdioServerParameters(command=sys.executable, args=["-m", "heablcoin_mcp"],
                                         env=env_for(home + "/sim", "sim"))
        minimal = StdioServerParameters(command=sys.executable, args=[str(script)])
        ours_cold, sim_cold, first_cold, minimal_cold = [], [], [], []
        for run in range(runs):  # interleaved, so machine noise hits all alike
            ours_cold.append(await cold_start(ours))
            sim_cold.append(await cold_start(ours_sim))
            first = StdioServerParameters(command=sys.executable, args=["-m", "heablcoin_mcp"],
                                          env=env_for(f"{home}/first-{run}", "binance"))
            first_cold.append(await cold_start(first))  # a new home: no tool list kept yet
            minimal_cold.append(await cold_start(minimal))

        settings = Settings(_env_file=None, home=Path(home) / "inproc", exchange="sim")  # type: ignore[call-arg]
        app = App(settings)
        import mcp.server.mcpserver as sdk

        reference = sdk.MCPServer("minimal")
        reference.add_tool(lambda: "pong", name="ping")
        async with Client(build_server(app)) as client, Client(reference) as ref_client:
            warm_ours = await timed(client.list_tools, runs * 20)
            warm_ref = await timed(ref_client.list_tools, runs * 20)
            health = await timed(lambda: client.call_tool("get_system_health", {}), runs * 20)
            ping = await timed(lambda: ref_client.call_tool("ping", {}), runs * 20)
        await app.aclose()

    def median(samples: list[tuple[float, float]], part: int) -> float:
        return statistics.median(sample[part] for sample in samples)

    return [
        ("cold start → tools/list, stdio (binance)", median(ours_cold, 0), "minimal MCPServer",
         median(minimal_cold, 0)),
        ("cold start → tools/list, stdio (sim)", median(sim_cold, 0), "minimal MCPServer", median(minimal_cold, 0)),
        ("first start in a new home → tools/list", median(first_cold, 0), "minimal MCPServer",
         median(minimal_cold, 0)),
        ("start → tools/list → exit, stdio (binance)", median(ours_cold, 1), "minimal MCPServer",
         median(minimal_cold, 1)),
        ("warm tools/list (in-process)", warm_ours, "minimal MCPServer", warm_ref),
        ("get_system_health (in-process)", health, "minimal ping tool", ping),
    ]


async def main(runs: int, only: str | None) -> None:
    rows = []
    if only in (None, "foundation"):
        rows += await foundation_rows(runs)
    if only in (None, "analysis"):
        from tools.bench import analysis

        rows += analysis.indicator_rows(runs)
        rows += await analysis.analysis_rows(runs)
    if only in (None, "ai"):
        from tools.bench import ai

        rows += ai.selection_rows(runs)
        rows += await ai.call_rows(runs)
    if only in (None, "tasks"):
        from tools.bench import tasks

        rows += tasks.rows()
    if only in (None, "storage"):
        from tools.bench import storage

        rows += storage.rows()
    if only in (None, "streams"):
        from tools.bench import streams

        rows += await streams.rows()
    sys.stdout.write(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {runs} runs per figure\n")
    for name, value, ref_name, ref, *unit in rows:  # seconds, unless a row names its own unit
        scale, label = (1, unit[0]) if unit else (1000, "ms")
        sys.stdout.write(f"{name:<42} {value * scale:10.3f} {label}  vs {ref_name:<22} {ref * scale:10.3f} {label}  "
                         f"ratio {value / ref:7.2f}x\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["foundation", "analysis", "ai", "tasks", "storage", "streams"])
    args = parser.parse_args()
    anyio.run(main, args.runs, args.only)
