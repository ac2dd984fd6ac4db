from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]


def make_app(tmp_path: Path, **settings: Any) -> App:
    values = {"exchange": "sim", "task_poll_interval": 0.05, **settings}
    return App(Settings(_env_file=None, home=tmp_path, **values))  # type: ignore[call-arg]


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    return dict(result.structured_content)


def error(result: Any) -> dict[str, Any]:
    return error_envelope(result)


async def test_a_three_step_pipeline_runs_in_order_and_reports_progress(tmp_path: Path) -> None:
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(build_server(make_app(tmp_path))) as client:
        fetch = ok(await client.call_tool("publish_enhanced_task", {
            "name": "fetch_data", "payload": {"symbol": "ETH/USDT", "timeframe": "4h", "limit": 20}}))["task"]
        analyse = ok(await client.call_tool("publish_enhanced_task", {
            "name": "market_analysis", "payload": '{"symbol": "ETH/USDT", "timeframe": "4h"}',
            "depends_on": fetch["id"], "priority": "HIGH", "tags": "eth, nightly"}))["task"]
        report = ok(await client.call_tool("publish_enhanced_task", {
            "name": "generate_report", "payload": {"title": "ETH nightly"},
            "depends_on": [fetch["id"], analyse["id"]]}))["task"]
        assert sorted(report["depends_on"]) == sorted([fetch["id"], analyse["id"]])
        waited = ok(await client.call_tool("wait_for_task", {"task_id": report["id"], "timeout": 30},
                                           progress_callback=on_progress))
        tagged = ok(await client.call_tool("list_enhanced_tasks", {"tags": ["eth"], "status": "COMPLETED"}))
        stats = ok(await client.call_tool("get_enhanced_task_stats", {}))
        resource = await client.read_resource(f"heablcoin://tasks/{analyse['id']}")
    assert waited["finished"] is True and waited["task"]["status"] == "COMPLETED"
    assert "# ETH nightly" in waited["task"]["result"]["markdown"]
    assert set(waited["task"]["result"]["sources"]) == {fetch["id"], analyse["id"]}
    assert progress and progress[-1].startswith("COMPLETED")
    assert [t["id"] for t in tagged["tasks"]] == [analyse["id"]]
    assert stats["stats"]["by_status"] == {"COMPLETED": 3}
    assert {h["name"] for h in stats["handlers"]} >= {"market_analysis", "price_alert", "system.sleep"}
    assert json.loads(resource.contents[0].text)["priority"] == "HIGH"  # type: ignore[union-attr]


async def test_cancel_retry_and_cleanup_over_mcp(tmp_path: Path) -> None:
    async with Client(build_server(make_app(tmp_path, worker_concurrency=0))) as client:
        parent = ok(await client.call_tool("publish_enhanced_task", {"name": "system.sleep",
                                                                     "payload": {"seconds": 0}}))["task"]
        child = ok(await client.call_tool("publish_enhanced_task", {"name": "system.sleep", "payload": {"seconds": 0},
                                                                    "depends_on": [parent["id"]]}))["task"]
        cancelled = ok(await client.call_tool("cancel_enhanced_task", {"task_id": parent["id"]}))
        assert cancelled["dependents_affected"] == 1
        child_now = ok(await client.call_tool("get_enhanced_task", {"task_id": child["id"]}))
        assert child_now["status"] == "CANCELLED"
        assert ok(await client.call_tool("retry_enhanced_task", {"task_id": parent["id"]}))["status"] == "PENDING"
        assert ok(await client.call_tool("cleanup_expired_tasks", {})) == {"expired": 0, "deleted": 0}
        short = ok(await client.call_tool("wait_for_task", {"task_id": parent["id"], "timeout": 0.3}))
    assert short["finished"] is False  # no worker in this process: the wait gives up, the task stays


async def test_a_scheduled_task_reports_its_schedule(tmp_path: Path) -> None:
    async with Client(build_server(make_app(tmp_path, worker_concurrency=0))) as client:
        published = ok(await client.call_tool("publish_enhanced_task", {
            "name": "market_analysis", "payload": {"symbol": "BTC/USDT"}, "schedule": "0 * * * *"}))
    assert published["schedule_id"].startswith("sch_") and published["task"]["schedule_id"] == published["schedule_id"]


@pytest.mark.parametrize(("arguments", "code"), [
    ({"name": "make_coffee"}, "invalid_input"),
    ({"name": "system.sleep", "payload": "[1, 2]"}, "invalid_input"),
    ({"name": "system.sleep", "payload": {"seconds": "forever"}}, "invalid_input"),
    ({"name": "system.sleep", "payload": {"seconds": 1}, "priority": "ASAP"}, "invalid_input"),
    ({"name": "system.sleep", "payload": {"seconds": 1}, "timeout": -5}, "invalid_input"),
    ({"name": "system.sleep", "payload": {"seconds": 1}, "depends_on": ["tsk_missing"]}, "not_found"),
    ({"name": "system.sleep", "payload": {"seconds": 1}, "schedule": "every tuesday"}, "invalid_input"),
    ({"name": "system.sleep", "payload": {"seconds": 1}, "schedule": 1}, "invalid_input"),
    ({"name": "system.sleep", "payload": {"seconds": 1}, "callback_url": "http://127.0.0.1/x"}, "invalid_config"),
])
async def test_nonsense_is_refused_and_nothing_is_queued(tmp_path: Path, arguments: dict[str, Any],
                                                         code: str) -> None:
    app = make_app(tmp_path, worker_concurrency=0)
    async with Client(build_server(app)) as client:
        assert error(await client.call_tool("publish_enhanced_task", arguments))["code"] == code
        assert error(await client.call_tool("get_enhanced_task", {"task_id": "tsk_missing"}))["code"] == "not_found"
    assert app.queue.stats()["total"] == 0


async def test_what_the_user_asked_for_is_what_is_stored(tmp_path: Path) -> None:
    async with Client(build_server(make_app(tmp_path))) as client:
        report = ok(await client.call_tool("publish_enhanced_task", {
            "name": "generate_report", "payload": {"symbols": ["BTC/USDT", "SOL/USDT"], "timeframe": "4h"}}))["task"]
        waited = ok(await client.call_tool("wait_for_task", {"task_id": report["id"], "timeout": 30}))
        unknown = error(await client.call_tool("publish_enhanced_task", {
            "name": "generate_report", "payload": {"markets": ["BTC/USDT"]}}))
        hourly = ok(await client.call_tool("publish_enhanced_task", {
            "name": "price_alert", "payload": {"symbol": "BTC/USDT", "above": 10_000_000}, "schedule": 3600}))
        cron = error(await client.call_tool("publish_enhanced_task", {
            "name": "price_alert", "payload": {"symbol": "BTC/USDT", "below": 1}, "schedule": "0 * * * *"}))
        clash = error(await client.call_tool("publish_enhanced_task", {
            "name": "price_alert", "payload": {"symbol": "BTC/USDT", "below": 1, "check_every": 60},
            "schedule": 3600}))
    assert report["payload"] == {"title": "Market report", "symbols": ["BTC/USDT", "SOL/USDT"], "timeframe": "4h"}
    markdown = waited["task"]["result"]["markdown"]
    assert "## BTC/USDT 4h" in markdown and "## SOL/USDT 4h" in markdown
    assert unknown["code"] == "invalid_input" and "markets" in unknown["message"]
    assert "title, symbols, timeframe" in unknown["hint"]
    # "every hour" on an alert is how often it checks, not a new alert each hour checking every minute
    assert hourly["task"]["payload"]["check_every"] == 3600 and hourly["schedule_id"] is None
    assert cron["code"] == "invalid_input" and "interval" in cron["message"]
    assert clash["code"] == "invalid_input" and "disagree" in clash["message"]
