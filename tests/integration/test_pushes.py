"""What the server pushes: resource updates in both protocol eras, log messages, completions, and
resource errors a client can read."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import (
    LoggingMessageNotification,
    PromptReference,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
)

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.server import build_server
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket
from tests.integration.test_trading_tools import BUY_ONE, answering, data

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
SECRET = "sk-live-0123456789abcdef0123"
SLEEP = {"name": "system.sleep", "payload": {"seconds": 0}}


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> App:
    # No in-process worker: a test decides who runs a task.
    settings = Settings(_env_file=None, home=tmp_path / "home", exchange="sim", worker_concurrency=0)  # type: ignore[call-arg]
    return App(settings, clock=clock, market_source=ScriptedMarket(clock, price=100.0), environ={"X_API_KEY": SECRET})


class Inbox:
    def __init__(self) -> None:
        self.updated: list[str] = []
        self.logs: list[Any] = []

    async def __call__(self, message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, ResourceUpdatedNotification):
            self.updated.append(str(root.params.uri))
        elif isinstance(root, LoggingMessageNotification):
            self.logs.append(root.params)

    async def wait_for(self, predicate: Any, seconds: float = 6.0) -> None:
        with anyio.fail_after(seconds):
            while not predicate():
                await anyio.sleep(0.05)


def legacy(app: App, inbox: Inbox) -> Client:
    return Client(build_server(app), mode="legacy", message_handler=inbox, elicitation_callback=answering(True))


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK marks resources/subscribe as the 2025 era's method
        await client.subscribe_resource(uri)


async def unsubscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.unsubscribe_resource(uri)


async def test_a_fill_and_a_limit_change_are_pushed_to_their_subscribers_only(app: App) -> None:
    inbox = Inbox()
    async with legacy(app, inbox) as client:
        assert client.server_capabilities.resources.subscribe is True
        await subscribe(client, "heablcoin://portfolio/default")
        await subscribe(client, "heablcoin://risk/limits")
        data(await client.call_tool("place_order", BUY_ONE))
        await inbox.wait_for(lambda: "heablcoin://portfolio/default" in inbox.updated)
        assert "heablcoin://risk/limits" not in inbox.updated and "heablcoin://journal/recent" not in inbox.updated

        data(await client.call_tool("set_risk_limits", {"reason": "careful", "max_order_notional": 50}))
        await inbox.wait_for(lambda: "heablcoin://risk/limits" in inbox.updated)

        await unsubscribe(client, "heablcoin://portfolio/default")
        inbox.updated.clear()
        data(await client.call_tool("place_order", {**BUY_ONE, "amount": 0.1}))
        await anyio.sleep(2.5)  # more than two polls
        assert "heablcoin://portfolio/default" not in inbox.updated


async def test_open_orders_are_pushed_on_placement_and_cancel(app: App) -> None:
    inbox = Inbox()
    async with legacy(app, inbox) as client:
        await subscribe(client, "heablcoin://orders/open")
        placed = data(await client.call_tool("place_order", {**BUY_ONE, "order_type": "limit", "price": 90}))
        await inbox.wait_for(lambda: "heablcoin://orders/open" in inbox.updated)
        listed = json.loads((await client.read_resource("heablcoin://orders/open")).contents[0].text)
        assert [o["id"] for o in listed] == [placed["order"]["id"]]
        inbox.updated.clear()
        data(await client.call_tool("cancel_order", {"order_id": placed["order"]["id"]}))
        await inbox.wait_for(lambda: "heablcoin://orders/open" in inbox.updated)
        assert json.loads((await client.read_resource("heablcoin://orders/open")).contents[0].text) == []


async def test_a_task_finished_elsewhere_is_pushed(app: App) -> None:
    """A worker process finishes tasks; the push comes from the database, not from this process's calls."""
    inbox = Inbox()
    async with legacy(app, inbox) as client:
        published = data(await client.call_tool("publish_enhanced_task", SLEEP))
        uri = f"heablcoin://tasks/{published['task']['id']}"
        await subscribe(client, uri)
        await anyio.sleep(1.5)
        assert uri not in inbox.updated  # subscribing is not a change
        claimed = app.queue.claim("elsewhere")
        assert claimed is not None
        await inbox.wait_for(lambda: uri in inbox.updated)
        other = data(await client.call_tool("publish_enhanced_task", SLEEP))["task"]["id"]
        await subscribe(client, f"heablcoin://tasks/{other}")
        app.queue.claim("elsewhere")  # at once: the subscription's starting point is when it was made
        await inbox.wait_for(lambda: f"heablcoin://tasks/{other}" in inbox.updated)


async def test_a_task_is_pushed_over_subscriptions_listen(app: App, clock: ManualClock) -> None:
    modern = Client(build_server(app), mode="auto", elicitation_callback=answering(True))
    async with modern as client:
        task_id = data(await client.call_tool("publish_enhanced_task", SLEEP))["task"]["id"]
        async with client.listen(resource_subscriptions=[f"heablcoin://tasks/{task_id}"]) as stream:
            clock.advance(1)
            assert app.queue.claim("elsewhere") is not None
            with anyio.fail_after(6):
                event = await stream.__anext__()
            assert event.uri == f"heablcoin://tasks/{task_id}"


async def test_the_2026_era_gets_the_same_pushes_over_subscriptions_listen(app: App) -> None:
    modern = Client(build_server(app), mode="auto", elicitation_callback=answering(True))
    async with modern as client, client.listen(resource_subscriptions=["heablcoin://portfolio/default"]) as stream:
            data(await client.call_tool("place_order", BUY_ONE))
            with anyio.fail_after(6):
                event = await stream.__anext__()
            assert event.uri == "heablcoin://portfolio/default"


async def test_subscriptions_to_what_publishes_nothing_are_refused(app: App) -> None:
    async with legacy(app, Inbox()) as client:
        for uri, said in [("test://watched-resource", "no updates are published"),
                          ("heablcoin://tasks/no-such-task", "no-such-task"),
                          ("heablcoin://portfolio/nobody", "nobody")]:
            with pytest.raises(MCPError) as refused:
                await subscribe(client, uri)
            assert refused.value.error.code == -32602 and said in refused.value.error.message


async def test_log_messages_reach_a_client_at_its_level_without_secrets(app: App) -> None:
    inbox = Inbox()
    async with legacy(app, inbox) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.set_logging_level("warning")
        logger = logging.getLogger("heablcoin_mcp.core.llm.manager")
        logger.info("routine detail")
        logger.warning("endpoint x refused key %s", SECRET)
        await inbox.wait_for(lambda: inbox.logs)
        await anyio.sleep(0.2)
    assert [entry.level for entry in inbox.logs] == ["warning"]
    assert SECRET not in str(inbox.logs[0].data) and "endpoint x refused key" in str(inbox.logs[0].data)
    assert inbox.logs[0].logger == "heablcoin_mcp.core.llm.manager"


async def test_completions_offer_symbols_timeframes_accounts_and_ids(app: App) -> None:
    async with Client(build_server(app), mode="legacy", elicitation_callback=answering(True)) as client:
        assert client.server_capabilities.completions is not None

        async def values(ref: Any, name: str, typed: str) -> list[str]:
            return (await client.complete(ref, {"name": name, "value": typed})).completion.values

        checklist = PromptReference(type="ref/prompt", name="pre_trade_checklist")
        assert "BTC/USDT" in await values(checklist, "symbol", "btcu")
        assert await values(checklist, "side", "s") == ["sell"]
        brief = PromptReference(type="ref/prompt", name="daily_market_brief")
        assert "4h" in await values(brief, "timeframe", "4")
        assert "BTC/USDT, ETH/USDT" in await values(brief, "symbols", "BTC/USDT, eth")
        portfolio = ResourceTemplateReference(type="ref/resource", uri="heablcoin://portfolio/{account}")
        assert await values(portfolio, "account", "DEF") == ["default"]
        order = data(await client.call_tool("place_order", BUY_ONE))
        review = PromptReference(type="ref/prompt", name="post_trade_review")
        assert order["order"]["id"] in await values(review, "order_id", order["order"]["id"][:4])
        published = data(await client.call_tool("publish_enhanced_task", SLEEP))
        task = ResourceTemplateReference(type="ref/resource", uri="heablcoin://tasks/{task_id}")
        assert await values(task, "task_id", published["task"]["id"]) == [published["task"]["id"]]
        assert await values(PromptReference(type="ref/prompt", name="nothing"), "arg1", "x") == []


async def test_a_missing_resource_is_a_readable_error_without_a_traceback(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    async with Client(build_server(app), mode="legacy") as client:
        with pytest.raises(MCPError) as missing:
            await client.read_resource("heablcoin://tasks/no-such-task")
    assert missing.value.error.code == -32602 and "no-such-task" in missing.value.error.message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_resource_error_is_scrubbed_like_every_other_output() -> None:
    from mcp.server.mcpserver.exceptions import UnexpectedResourceError

    from heablcoin_mcp.core.redact import Redactor
    from heablcoin_mcp.errors import NotFound
    from heablcoin_mcp.server import resource_error

    failure = UnexpectedResourceError("Error reading resource")
    failure.__cause__ = NotFound(f"exchange said: key {SECRET} unknown", hint="check the account")
    told = str(resource_error(failure, Redactor({"X_API_KEY": SECRET})))
    assert SECRET not in told and "exchange said: key [redacted] unknown (check the account)" in told


async def test_a_poll_while_a_subscription_reads_its_task_keeps_the_starting_point(app: App,
                                                                                     clock: ManualClock) -> None:
    """The feed is polled once a second whatever a subscribe is doing: a poll landing while the
    subscription reads its resource must not forget where the subscription started."""
    from types import SimpleNamespace

    from mcp.server.subscriptions import InMemorySubscriptionBus
    from mcp.types import SubscribeRequestParams

    from heablcoin_mcp.core.changes import ChangeFeed, task_path
    from heablcoin_mcp.notifications import Pushes

    app.db.migrate()  # the server's start would
    feed = ChangeFeed(app.db)
    assert feed.poll() == []
    (task_id,) = app.queue.publish([app.tasks.spec("system.sleep", {"seconds": 0})])

    async def read(uri: str) -> None:
        assert feed.poll(pushes._watched_tasks()) == []  # the poll loop runs meanwhile

    pushes = Pushes(feed, InMemorySubscriptionBus(), app.redactor, read)
    await pushes.subscribe(SimpleNamespace(session=object()),  # type: ignore[arg-type]
                           SubscribeRequestParams(uri=f"heablcoin://tasks/{task_id}"))
    clock.advance(1)
    assert app.queue.claim("elsewhere") is not None
    assert feed.poll(pushes._watched_tasks()) == [task_path(task_id)]
