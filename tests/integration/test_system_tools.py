from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import TOOLSET_NAMES, Settings
from heablcoin_mcp.core.storage import MIGRATIONS
from heablcoin_mcp.server import TOOLSETS, build_server
from tests.envelope import error_envelope

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]

SYSTEM_TOOLS = {"get_system_health", "validate_config"}


def error_of(result: Any) -> dict[str, Any]:
    error = error_envelope(result)
    assert set(error) >= {"code", "message", "hint", "retryable"}
    return error


def test_every_configured_toolset_has_a_register_function() -> None:
    assert tuple(TOOLSETS) == TOOLSET_NAMES


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_health_reports_paper_mode_sim_market_and_its_database(app: App, mode: str, engine_name: str) -> None:
    async with Client(build_server(app), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("get_system_health", {})
    assert result.is_error is False
    health = result.structured_content
    assert health is not None
    assert health["status"] == "ok"
    assert (health["trading_mode"], health["exchange"], health["simulated_market"]) == ("paper", "sim", True)
    assert health["database"]["engine"] == engine_name
    assert health["database"]["schema_version"] == MIGRATIONS[-1].version
    if engine_name == "sqlite":
        assert health["database"]["journal_mode"] == "wal"
        assert health["database"]["path"] == str(app.settings.db_path)
    else:
        assert health["database"]["path"].startswith("postgresql://")
        database = next(c for c in health["components"] if c["name"] == "database")
        assert database["metrics"]["latency_ms"] > 0
    assert [c["name"] for c in health["components"]] == ["database", "market_data", "streams", "trading", "ai", "tasks"]
    assert health["toolsets"] == list(TOOLSET_NAMES)


async def test_uptime_comes_from_the_clock(app: App, clock: Any) -> None:
    async with Client(build_server(app)) as client:
        clock.advance(42)
        result = await client.call_tool("get_system_health", {})
    assert result.structured_content is not None
    assert result.structured_content["uptime_seconds"] == 42


@pytest.mark.parametrize("components", ["database", '["database"]', ["database"]])
async def test_component_filter_accepts_csv_json_string_and_list(app: App, components: object) -> None:
    async with Client(build_server(app)) as client:
        result = await client.call_tool("get_system_health", {"components": components})
    assert result.is_error is False
    assert result.structured_content is not None
    assert [c["name"] for c in result.structured_content["components"]] == ["database"]


async def test_unknown_component_gets_the_error_envelope_with_the_known_names(app: App) -> None:
    async with Client(build_server(app)) as client:
        result = await client.call_tool("get_system_health", {"components": ["flux"]})
    error = error_of(result)
    assert error["code"] == "invalid_input"
    assert "flux" in error["message"] and "database" in error["hint"]


@pytest.mark.parametrize("bad", [42, {"a": 1}, [1, 2], True])
async def test_wrong_argument_types_get_invalid_input_naming_the_field(app: App, bad: object) -> None:
    async with Client(build_server(app)) as client:
        result = await client.call_tool("get_system_health", {"components": bad})
    error = error_of(result)
    assert error["code"] == "invalid_input"
    assert "components" in error["message"]


async def test_unknown_tool_gets_not_found(app: App) -> None:
    async with Client(build_server(app)) as client:
        result = await client.call_tool("buy_the_dip", {})
    assert error_of(result)["code"] == "not_found"


async def test_validate_config_reports_the_running_settings(app: App) -> None:
    async with Client(build_server(app)) as client:
        result = await client.call_tool("validate_config", {})
    report = result.structured_content
    assert report is not None and report["ok"] is True
    checks = {c["variable"]: c for c in report["checks"]}
    assert checks["HEABLCOIN_EXCHANGE"]["value"] == "sim"
    assert checks["HEABLCOIN_HOME"]["value"] == str(app.settings.home)


async def test_only_enabled_toolsets_register_tools(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim", toolsets=("system",))  # type: ignore[call-arg]
    async with Client(build_server(App(settings))) as client:
        assert {t.name for t in (await client.list_tools()).tools} == SYSTEM_TOOLS


async def test_two_clients_share_one_started_app_and_the_last_one_stops_it(app: App) -> None:
    server = build_server(app)
    first_inside = anyio.Event()
    release_first = anyio.Event()

    async def first() -> None:
        async with Client(server) as client:
            await client.call_tool("get_system_health", {})
            first_inside.set()
            await release_first.wait()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await first_inside.wait()
            async with Client(server) as second:
                assert (await second.call_tool("get_system_health", {})).is_error is False
            assert app.started  # the first client still holds it
            release_first.set()
    assert not app.started


async def test_a_crashing_component_reports_down_instead_of_raising(app: App, engine_name: str) -> None:
    async with Client(build_server(app)) as client:
        app.db.conn.close()  # the database connection dies under the running server
        if engine_name == "postgresql":
            recovered = await client.call_tool("get_system_health", {})
            assert recovered.structured_content["status"] == "ok"  # a closed connection is replaced
            app.db.conn.close()
            app.db.url = "postgresql://127.0.0.1:1/test"  # and now the server is gone
        result = await client.call_tool("get_system_health", {})
    assert result.is_error is False
    health = result.structured_content
    assert health is not None
    assert health["status"] == "down" and health["database"] is None
    detail = {"sqlite": "ProgrammingError", "postgresql": "ConfigError"}[engine_name]
    assert health["components"][0] == {"name": "database", "status": "down", "detail": detail, "metrics": {}}
    assert health["components"][1]["status"] == "ok"  # the market does not depend on the database
