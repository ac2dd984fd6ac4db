from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.clock import ManualClock
from tests.fakes.llm import Behaviour, FakeLLM, fake_llms
from tests.integration.test_trading_tools import answering

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
ENV = {"PRIMARY_API_KEY": "sk-primary-secret-123456", "BACKUP_API_KEY": "sk-backup-secret-654321"}
USER_SAYS_YES = answering(True)


@pytest.fixture
def llms() -> Iterator[list[FakeLLM]]:
    with fake_llms("primary", "backup") as servers:
        yield servers


def app_for(tmp_path: Path, **settings: Any) -> App:
    """The loopback fake providers are local models as far as the server can tell."""
    values = {"exchange": "sim", "ai_allow_private": True, **settings}
    return App(Settings(_env_file=None, home=tmp_path, **values), clock=ManualClock(), environ=ENV)  # type: ignore[call-arg]


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    return dict(result.structured_content)


def error(result: Any) -> dict[str, Any]:
    return error_envelope(result)


async def test_endpoints_are_added_routed_and_failed_over(tmp_path: Path, llms: list[FakeLLM]) -> None:
    primary, backup = llms
    async with Client(build_server(app_for(tmp_path)), elicitation_callback=USER_SAYS_YES) as client:
        added = ok(await client.call_tool("add_api_endpoint", {
            "name": "primary", "base_url": primary.url, "model": "gpt-x", "api_key_env": "PRIMARY_API_KEY"}))
        assert added["key_set"] is True and "PRIMARY_API_KEY is set" in added["message"]
        missing = ok(await client.call_tool("add_api_endpoint", {
            "name": "nokey", "base_url": backup.url, "model": "m", "api_key_env": "NOT_SET_API_KEY", "priority": 5}))
        assert missing["key_set"] is False and "NOT set" in missing["message"]
        ok(await client.call_tool("add_api_endpoint", {
            "name": "backup", "base_url": backup.url, "model": "claude-x", "api_key_env": "BACKUP_API_KEY",
            "provider": "anthropic", "priority": "2"}))
        first = ok(await client.call_tool("ask_ai", {"prompt": "What is a stop-loss?"}))
        primary.then(Behaviour(status=500))
        second = ok(await client.call_tool("ask_ai", {"prompt": "And a take-profit?", "max_tokens": "50"}))
        stats = {s["name"]: s for s in ok(await client.call_tool("get_api_manager_stats", {}))["endpoints"]}
        everything = [first, second, stats, ok(await client.call_tool("list_api_endpoints", {}))]
    assert first["endpoint"] == "primary" and first["text"] == "answer from primary"
    assert second["endpoint"] == "backup" and second["attempts"][0]["status"] == 500
    assert backup.seen[-1].body["max_tokens"] == 50
    assert stats["primary"]["failures"] == {"server_error": 1} and stats["primary"]["successes"] == 1
    assert stats["nokey"]["key_set"] is False and stats["backup"]["latency_p50_ms"] is not None
    assert not any(secret in json.dumps(everything) for secret in ENV.values())


async def test_update_disable_remove_and_reset_take_effect_at_once(tmp_path: Path, llms: list[FakeLLM]) -> None:
    primary, backup = llms
    async with Client(build_server(app_for(tmp_path)), elicitation_callback=USER_SAYS_YES) as client:
        for llm, key, priority in ((primary, "PRIMARY_API_KEY", 1), (backup, "BACKUP_API_KEY", 2)):
            ok(await client.call_tool("add_api_endpoint", {"name": llm.name, "base_url": llm.url, "model": "m",
                                                           "api_key_env": key, "priority": priority}))
        ok(await client.call_tool("update_api_endpoint", {"name": "primary", "enabled": False}))
        assert ok(await client.call_tool("ask_ai", {"prompt": "x"}))["endpoint"] == "backup"
        ok(await client.call_tool("update_api_endpoint", {"name": "primary", "enabled": True, "priority": 3}))
        assert ok(await client.call_tool("ask_ai", {"prompt": "x"}))["endpoint"] == "backup"
        ok(await client.call_tool("remove_api_endpoint", {"name": "backup"}))
        assert ok(await client.call_tool("ask_ai", {"prompt": "x"}))["endpoint"] == "primary"
        assert ok(await client.call_tool("reset_api_stats", {}))["reset"] == 1
        stats = ok(await client.call_tool("get_api_manager_stats", {}))["endpoints"]
    assert [(s["name"], s["requests"]) for s in stats] == [("primary", 0)]


async def test_endpoints_declared_in_settings_are_loaded_at_start(tmp_path: Path, llms: list[FakeLLM]) -> None:
    declared = [{"name": "from-env", "base_url": llms[0].url, "model": "m", "api_key_env": "PRIMARY_API_KEY"}]
    async with Client(build_server(app_for(tmp_path, ai_endpoints=declared))) as client:
        reply = ok(await client.call_tool("ask_ai", {"prompt": "hello", "strategy": "round_robin"}))
    assert reply["endpoint"] == "from-env" and reply["strategy"] == "round_robin"


async def test_market_commentary_feeds_the_analysis_to_the_model(tmp_path: Path, llms: list[FakeLLM]) -> None:
    primary = llms[0]
    primary.then(Behaviour(text="Simulated data: BTC is drifting lower on the hour."))
    async with Client(build_server(app_for(tmp_path)), elicitation_callback=USER_SAYS_YES) as client:
        ok(await client.call_tool("add_api_endpoint", {"name": "primary", "base_url": primary.url, "model": "m",
                                                       "api_key_env": "PRIMARY_API_KEY"}))
        result = ok(await client.call_tool("ai_market_commentary", {"symbol": "BTC/USDT", "timeframe": "1h"}))
    assert result["commentary"]["text"].startswith("Simulated data")
    assert result["analysis"]["symbol"] == "BTC/USDT" and result["analysis"]["simulated"] is True
    sent = primary.seen[-1].body["messages"]
    assert sent[0]["role"] == "system" and "never give financial advice" in sent[0]["content"]
    assert '"symbol": "BTC/USDT"' in sent[1]["content"]


@pytest.mark.parametrize(("tool", "arguments", "code"), [
    ("add_api_endpoint", {"base_url": "not a url"}, "invalid_input"),
    ("add_api_endpoint", {"provider": "gemini"}, "invalid_input"),
    ("add_api_endpoint", {"api_key_env": "sk-live-real-key-pasted"}, "invalid_input"),
    ("add_api_endpoint", {"max_requests_per_minute": -1}, "invalid_input"),
    ("add_api_endpoint", {"timeout": 0}, "invalid_input"),
    ("update_api_endpoint", {"name": "ghost", "priority": 2}, "not_found"),
    ("remove_api_endpoint", {"name": "ghost"}, "not_found"),
    ("ask_ai", {"prompt": "x", "strategy": "fastest"}, "invalid_input"),
    ("ask_ai", {"prompt": "x", "endpoint": "ghost"}, "not_found"),
    ("ask_ai", {"prompt": "", "max_tokens": 10}, "invalid_input"),
    ("ask_ai", {"prompt": "x", "temperature": 9}, "invalid_input"),
])
async def test_nonsense_gets_clear_errors(tmp_path: Path, llms: list[FakeLLM], tool: str, arguments: dict[str, Any],
                                          code: str) -> None:
    base = {"name": "e1", "base_url": llms[0].url, "model": "m", "api_key_env": "PRIMARY_API_KEY"}
    async with Client(build_server(app_for(tmp_path)), elicitation_callback=USER_SAYS_YES) as client:
        ok(await client.call_tool("add_api_endpoint", base))
        if tool == "add_api_endpoint":
            arguments = {**base, "name": "e2", **arguments}
        assert error(await client.call_tool(tool, arguments))["code"] == code


async def test_a_duplicate_name_is_refused(tmp_path: Path, llms: list[FakeLLM]) -> None:
    base = {"name": "e1", "base_url": llms[0].url, "model": "m", "api_key_env": "PRIMARY_API_KEY"}
    async with Client(build_server(app_for(tmp_path)), elicitation_callback=USER_SAYS_YES) as client:
        ok(await client.call_tool("add_api_endpoint", base))
        assert "already exists" in error(await client.call_tool("add_api_endpoint", base))["message"]


async def test_no_endpoint_at_all_is_explained(tmp_path: Path) -> None:
    async with Client(build_server(app_for(tmp_path)), elicitation_callback=USER_SAYS_YES) as client:
        missing = error(await client.call_tool("ask_ai", {"prompt": "hello"}))
    assert missing["code"] == "not_found" and "add_api_endpoint" in missing["hint"]
