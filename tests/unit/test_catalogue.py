"""The tool list kept between starts: the same list as a fresh build, and never a stale one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import TOOLSET_NAMES, Settings
from heablcoin_mcp.server import build_server
from heablcoin_mcp.tools._catalogue import PACKAGE, Catalogue, fingerprint

pytestmark = pytest.mark.anyio


def settings_for(home: Path) -> Settings:
    return Settings(_env_file=None, home=home, exchange="sim", toolsets=TOOLSET_NAMES)  # type: ignore[call-arg]


async def listing(home: Path) -> tuple[list[dict[str, object]], int]:
    """What a client sees in tools/list, and how many tools were still unbuilt after it."""
    app = App(settings_for(home))
    server = build_server(app)
    async with Client(server) as client:
        tools = [t.model_dump(by_alias=True) for t in (await client.list_tools()).tools]
    await app.aclose()
    return tools, len(server._unbuilt)


async def test_a_second_start_lists_the_kept_tools_and_builds_each_when_called(tmp_path: Path) -> None:
    fresh, unbuilt_fresh = await listing(tmp_path)
    assert unbuilt_fresh == 0 and (tmp_path / "cache" / "tools.json").exists()
    kept, unbuilt_kept = await listing(tmp_path)
    assert kept == fresh and unbuilt_kept == len(fresh)

    app = App(settings_for(tmp_path))
    server = build_server(app)
    async with Client(server) as client:
        await client.list_tools()
        good = await client.call_tool("get_ticker", {"symbol": "btc/usdt"})
        bad = await client.call_tool("get_ohlcv", {"symbol": "BTC/USDT", "limit": "lots"})
    await app.aclose()
    assert good.is_error is False and good.structured_content["symbol"] == "BTC/USDT"  # type: ignore[index]
    assert bad.is_error is True and "limit" in bad.content[0].text  # type: ignore[union-attr]
    assert {"get_ticker", "get_ohlcv"}.isdisjoint(server._unbuilt) and len(server._unbuilt) == len(fresh) - 2


def older(kept: str) -> str:
    """The list as an earlier build of the code wrote it: same tools, another description."""
    body = json.loads(kept)
    body["fingerprint"] = "0" * 32
    body["tools"][0]["description"] = "what an older build said"
    return json.dumps(body)


@pytest.mark.parametrize("damage", [older, lambda _: "{not json", lambda _: '{"tools": 3}', lambda _: "[]"])
async def test_a_damaged_or_older_list_is_built_again_and_rewritten(tmp_path: Path, damage: Any) -> None:
    fresh, _ = await listing(tmp_path)
    kept_file = tmp_path / "cache" / "tools.json"
    kept_file.write_text(damage(kept_file.read_text()))
    again, unbuilt = await listing(tmp_path)
    assert again == fresh and unbuilt == 0
    assert json.loads(kept_file.read_text())["fingerprint"] == fingerprint(TOOLSET_NAMES)


async def test_a_home_that_cannot_be_written_still_lists_every_tool(tmp_path: Path) -> None:
    fresh, _ = await listing(tmp_path / "one")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "cache").write_text("a file where the cache folder would be")
    tools, unbuilt = await listing(tmp_path / "two")
    assert tools == fresh and unbuilt == 0


def test_the_fingerprint_moves_with_any_source_file_and_the_toolsets(tmp_path: Path) -> None:
    copy = tmp_path / "package"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = fingerprint(TOOLSET_NAMES, copy)
    assert fingerprint(TOOLSET_NAMES, copy) == before
    deep = copy / "core" / "books" / "models.py"
    deep.write_text(deep.read_text() + "\n# a comment changes the size\n")
    edited = fingerprint(TOOLSET_NAMES, copy)
    assert edited != before
    assert fingerprint(TOOLSET_NAMES[:-1], copy) != edited


def test_a_list_for_other_tools_is_not_used(tmp_path: Path) -> None:
    catalogue = Catalogue(tmp_path / "tools.json", TOOLSET_NAMES)
    catalogue.write([])
    assert catalogue.read([]) == []
    assert catalogue.read(["get_ticker"]) is None
