"""Nothing a model sends grows a stored row without limit, and nonsense is refused before any write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope

pytestmark = pytest.mark.anyio


def rows(app: App) -> dict[str, int]:
    tables = [r[0] for r in app.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: app.db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables if t != "journal"}


async def test_deny_patterns_are_bounded_and_the_journal_keeps_a_summary(tmp_path: Path) -> None:
    app = App(Settings(_env_file=None, home=tmp_path, exchange="sim"))  # type: ignore[call-arg]
    async with Client(build_server(app)) as client:
        many = [f"COIN{i}/*" for i in range(100)]
        ok = await client.call_tool("set_risk_limits", {"reason": "deny", "deny_symbols_add": many})
        before = rows(app)
        too_many = error_envelope(await client.call_tool("set_risk_limits", {
            "reason": "deny", "deny_symbols_add": [f"X{i}" for i in range(101)]}))
        too_long = error_envelope(await client.call_tool("set_risk_limits", {
            "reason": "deny", "deny_symbols_add": ["A" * 1_000_000]}))
        not_a_pattern = error_envelope(await client.call_tool("set_risk_limits", {
            "reason": "deny", "deny_symbols_add": ["'; DROP TABLE orders; --"]}))
        details = [len(r[0]) for r in app.db.conn.execute("SELECT detail FROM journal")]
    assert ok.is_error is False
    assert too_many["code"] == too_long["code"] == not_a_pattern["code"] == "invalid_input"
    assert rows(app) == before
    assert max(details) <= 8_000


@pytest.mark.parametrize(("tool", "arguments"), [
    ("publish_enhanced_task", {"name": "system.sleep", "payload": {"seconds": 1}, "schedule": "NaN"}),
    ("publish_enhanced_task", {"name": "system.sleep", "payload": {"seconds": 1}, "schedule": "inf"}),
    ("publish_enhanced_task", {"name": "system.sleep", "payload": {"seconds": 1}, "schedule": "1e308"}),
    ("publish_enhanced_task", {"name": "generate_report", "payload": {"title": "x" * 100_000}}),
    ("publish_enhanced_task", {"name": "system.sleep", "payload": {"seconds": 1},
                               "tags": [f"t{i}" for i in range(10_000)]}),
    ("list_enhanced_tasks", {"tags": [f"t{i}" for i in range(10_000)]}),
])
async def test_unbounded_or_non_finite_task_input_is_refused_and_stores_nothing(
        tmp_path: Path, tool: str, arguments: dict[str, object]) -> None:
    app = App(Settings(_env_file=None, home=tmp_path, exchange="sim", worker_concurrency=0))  # type: ignore[call-arg]
    async with Client(build_server(app)) as client:
        before = rows(app)
        refused = error_envelope(await client.call_tool(tool, arguments))
    assert refused["code"] == "invalid_input", refused
    assert rows(app) == before
    assert len(json.dumps(refused)) < 2_000  # the error names the problem; it does not echo the input


CONTEXT_BUDGET = 25_000  # characters a result may cost the model at its defaults and at the capped maxima
SIZED_CALLS = [
    ("get_ticker", {"symbol": "BTC/USDT"}),
    ("get_ohlcv", {"symbol": "BTC/USDT"}),
    ("get_ohlcv", {"symbol": "BTC/USDT", "timeframe": "1m", "limit": 300}),
    ("get_order_book", {"symbol": "BTC/USDT", "depth": 100}),
    ("list_markets", {"limit": 100}),
    ("market_analysis", {"symbol": "BTC/USDT"}),
    ("compute_indicators", {"symbol": "BTC/USDT"}),
    ("compute_indicators", {"symbol": "BTC/USDT", "series": 100}),
    ("scan_market", {"symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "DOGE/USDT"]}),
    ("get_system_health", {}),
    ("get_risk_parameters", {"symbol": "BTC/USDT"}),
]


async def test_results_fit_the_context_budget_and_floats_say_only_what_they_mean(tmp_path: Path) -> None:
    app = App(Settings(_env_file=None, home=tmp_path, exchange="sim"))  # type: ignore[call-arg]
    async with Client(build_server(app)) as client:
        sizes = {}
        for name, arguments in SIZED_CALLS:
            result = await client.call_tool(name, arguments)
            assert result.is_error is False, (name, result.content)
            sizes[(name, json.dumps(arguments))] = len(result.content[0].text)  # type: ignore[union-attr]
        ticker = json.loads((await client.call_tool("get_ticker", {"symbol": "BTC/USDT"})).content[0].text)  # type: ignore[union-attr]
    assert {call: size for call, size in sizes.items() if size > CONTEXT_BUDGET} == {}
    assert ticker["spread_pct"] == round(ticker["spread_pct"], 2)
    assert ticker["spread"] == float(f"{ticker['spread']:.10g}")
    assert ticker["ask"] - ticker["bid"] == pytest.approx(ticker["spread"], abs=1e-6)
