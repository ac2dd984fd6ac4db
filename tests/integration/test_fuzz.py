"""Nonsense for every parameter of every tool, generated from the tools' own input schemas.

Each call gets one bad value (wrong type, NaN / ±Inf / 1e308, a huge string, control characters,
path- and SQL-like strings, JSON text for a list, ...) or a missing / extra field, with plausible
values everywhere else. Every answer must be a result (never a crash or a hang), never `internal`,
never a traceback or a configured secret, and a refused call must leave every table but the audit
journal exactly as it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket

pytestmark = pytest.mark.anyio
SECRET = "sk-fuzz-secret-value-4Rt7Yq"
PLAUSIBLE: dict[str, Any] = {
    "symbol": "BTC/USDT", "side": "buy", "amount": 0.01, "reason": "fuzz", "name": "fuzz", "task_id": "tsk_none",
    "order_id": "ord_none", "token": "cfm_none_0000000000", "state": "ACTIVE", "prompt": "hello",
    "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "FUZZ_API_KEY", "exchange": "sim",
    "mode": "paper", "indicators": ["rsi"], "symbols": ["BTC/USDT"], "payload": {"seconds": 0},
}
BAD_VALUES: list[Any] = [
    None, [], {}, "", "x" * 200_000, math.nan, math.inf, -math.inf, 1e308, -1, 0, 12345678901234567890, True,
    "\x00\x1b[31m\u202e", "../../../etc/passwd", "'; DROP TABLE orders; --", '["BTC/USDT", "ETH/USDT"]',
    {"$gt": ""}, [[[[["deep"]]]]],
]
NOT_RUN = {"wait_for_task"}  # a valid task id would wait: it gets its own bounded checks elsewhere
SHORT = {"watch_market": {"seconds": 0.2}}  # a valid call watches for its duration: keep it short


def plausible(name: str, schema: dict[str, Any]) -> Any:
    if name in PLAUSIBLE:
        return PLAUSIBLE[name]
    options = schema.get("anyOf", [schema])
    for option in options:
        if "enum" in option:
            return option["enum"][0]
        kind = option.get("type")
        if kind in ("number", "integer"):
            return option.get("minimum", option.get("exclusiveMinimum", 0) + 1)
        if kind == "string":
            return "x"
        if kind == "boolean":
            return False
        if kind == "array":
            return []
        if kind == "object":
            return {}
    return None


def cases(tool: Any) -> list[tuple[str, dict[str, Any]]]:
    properties: dict[str, Any] = tool.input_schema.get("properties", {})
    required = set(tool.input_schema.get("required", []))
    base = {**{n: plausible(n, s) for n, s in properties.items() if n in required}, **SHORT.get(tool.name, {})}
    out = [("extra field", {**base, "definitely_not_a_parameter": 1})]
    out += [(f"missing {n}", {k: v for k, v in base.items() if k != n}) for n in required]
    out += [(f"{n}={value!r:.30}", {**base, n: value}) for n in properties for value in BAD_VALUES]
    return out


def snapshot(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit journal (and the journal's own id counter)."""
    tables = [r[0] for r in app.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = {t: [tuple(r) for r in app.db.conn.execute(f"SELECT * FROM {t}")] for t in tables if t != "journal"}
    rows["sqlite_sequence"] = [r for r in rows.get("sqlite_sequence", []) if r[0] != "journal"]
    return rows


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_every_tool_answers_nonsense_with_a_clean_error_and_changes_nothing(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim", worker_concurrency=0,  # type: ignore[call-arg]
                        paper_matcher_interval=3600)
    app = App(settings, clock=clock, market_source=ScriptedMarket(clock), environ={"FUZZ_API_KEY": SECRET})
    problems: list[str] = []
    calls = 0
    async with Client(build_server(app)) as client:
        tools = [t for t in (await client.list_tools()).tools if t.name not in NOT_RUN]
        for tool in tools:
            for label, arguments in cases(tool):
                before = snapshot(app)
                with anyio.fail_after(30):
                    result = await client.call_tool(tool.name, arguments)
                calls += 1
                text = text_of(result)
                where = f"{tool.name} [{label}]"
                if "Traceback" in text or SECRET in text or SECRET in json.dumps(result.structured_content or {}):
                    problems.append(f"{where}: traceback or secret in the answer")
                if not result.is_error:
                    continue
                error = json.loads(text)["error"]
                if error["code"] == "internal":
                    problems.append(f"{where}: internal error")
                after = snapshot(app)
                if after != before:
                    changed = sorted(t for t in after if after[t] != before.get(t))
                    problems.append(f"{where}: refused ({error['code']}) but changed {', '.join(changed)}")
    assert calls > 1000
    assert problems == [], "\n".join(problems)
