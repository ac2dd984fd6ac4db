"""Cheap tests that pin the public surface: layering, lazy imports, README catalogue."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from pydantic import TypeAdapter

from heablcoin_mcp.app import App
from heablcoin_mcp.config import TOOLSET_NAMES, Settings
from heablcoin_mcp.server import build_server
from heablcoin_mcp.tools import _schemas

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "heablcoin_mcp"


def test_core_never_imports_mcp() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (PACKAGE / "core").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+mcp\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []


def test_the_package_never_prints() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if re.search(r"\bprint\(", p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("exchange", ["sim", "binance"])
def test_heavy_libraries_are_not_imported_to_serve_tools_list(tmp_path: Path, exchange: str) -> None:
    """From start to the first tools/list, on either market: what only a price, an analysis or an
    outbound call needs loads with that call."""
    probe = (
        "import sys, anyio; import heablcoin_mcp.cli, heablcoin_mcp.http, heablcoin_mcp.stdio; "
        "from heablcoin_mcp.app import App; from heablcoin_mcp.config import Settings; "
        "from heablcoin_mcp.server import build_server; "
        f"app = App(Settings(_env_file=None, home={str(tmp_path)!r}, exchange={exchange!r})); "
        "server = build_server(app); anyio.run(server.list_tools); "
        "print(sorted(m for m in ('ccxt', 'pandas', 'talib', 'ta', 'numpy', 'httpx', 'tenacity', 'pygments', "
        "'prometheus_client', 'psycopg', 'redis') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_readme_tool_reference_lists_exactly_the_registered_tools(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim", toolsets=TOOLSET_NAMES)  # type: ignore[call-arg]
    async with Client(build_server(App(settings))) as client:
        registered = {t.name for t in (await client.list_tools()).tools}
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("## Tool reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)`", reference, re.MULTILINE))
    assert documented == registered


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_tool_has_title_description_annotations_and_a_result_model(tmp_path: Path, mode: str) -> None:
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim")  # type: ignore[call-arg]
    async with Client(build_server(App(settings)), mode=mode) as client:  # type: ignore[arg-type]
        tools = (await client.list_tools()).tools
    for tool in tools:
        assert tool.title, tool.name
        assert tool.description and len(tool.description) > 80, tool.name
        hints = tool.annotations
        assert hints is not None and hints.read_only_hint is not None and hints.open_world_hint is not None
        assert hints.read_only_hint or hints.destructive_hint is not None, tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"


def test_env_example_documents_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    missing = [name for name in Settings.model_fields if f"HEABLCOIN_{name.upper()}" not in example]
    assert missing == []


TOOLS_LIST_BUDGET = 50_000  # characters on the wire, every toolset on: what each chat pays before a word


@pytest.mark.anyio
async def test_tools_list_with_every_toolset_stays_within_its_budget(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim", toolsets=TOOLSET_NAMES)  # type: ignore[call-arg]
    async with Client(build_server(App(settings))) as client:
        listed = await client.session.list_tools()
    wire = listed.model_dump_json(by_alias=True, exclude_none=True)
    assert len(wire) <= TOOLS_LIST_BUDGET, len(wire)
    for tool in listed.tools:
        assert "\n        " not in (tool.description or ""), f"{tool.name}: docstring indentation"
        assert "title" not in json.dumps(tool.input_schema).replace('"title":{', ""), tool.name


@pytest.mark.anyio
async def test_every_success_result_still_matches_its_advertised_output_schema(tmp_path: Path) -> None:
    import jsonschema

    settings = Settings(_env_file=None, home=tmp_path, exchange="sim")  # type: ignore[call-arg]
    async with Client(build_server(App(settings))) as client:
        schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
        for name, arguments in (("get_ticker", {"symbol": "BTC/USDT"}), ("get_orders", {}),
                                ("get_system_health", {}), ("get_pnl_report", {}), ("list_accounts", {})):
            result = await client.call_tool(name, arguments)
            assert result.is_error is False, name
            jsonschema.validate(result.structured_content, schemas[name])


def test_published_output_schemas_equal_the_shallow_form_of_the_full_schema(tmp_path: Path) -> None:
    """The start-up shortcut (fields read from the model) publishes exactly what the full pydantic
    schema would have been made into, for every tool, and every tool takes the shortcut."""
    settings = Settings(_env_file=None, home=tmp_path, exchange="sim", toolsets=TOOLSET_NAMES)  # type: ignore[call-arg]
    server = build_server(App(settings))
    tools = server.built_tools()
    assert tools and all(isinstance(t.fn_metadata.output_model, type) for t in tools)
    for tool in tools:
        full = TypeAdapter(tool.fn_metadata.output_model).json_schema()
        assert tool.output_schema == _schemas.shallow(full), tool.name


def test_start_up_leaves_the_collector_on_with_the_start_up_objects_frozen() -> None:
    """serve() builds without the cyclic collector; it must be on again afterwards (a server that
    never collects grows), also when building fails."""
    import gc

    from heablcoin_mcp.cli import frozen_startup

    try:
        with frozen_startup():
            assert not gc.isenabled()
            made = [[] for _ in range(100)]
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
        with pytest.raises(RuntimeError), frozen_startup():
            raise RuntimeError("build failed")
        assert gc.isenabled()
    finally:
        gc.unfreeze()
