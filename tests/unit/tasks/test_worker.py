from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.tasks.scheduler import next_cron, parse_cron, parse_schedule
from heablcoin_mcp.core.tasks.webhooks import sign
from heablcoin_mcp.errors import ConfigError, InvalidInput
from tests.fakes.clock import ManualClock
from tests.fakes.market import ScriptedMarket

pytestmark = [pytest.mark.anyio, pytest.mark.both_engines]
SECRET = "whsec-test-0123456789"


def make_app(tmp_path: Path, clock: ManualClock, market: ScriptedMarket | None = None, **settings: Any) -> App:
    values = {"exchange": "sim", "webhook_secret": SECRET, **settings}
    return App(Settings(_env_file=None, home=tmp_path, **values), clock=clock,  # type: ignore[call-arg]
               market_source=market)


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> Any:
    application = make_app(tmp_path, clock, ScriptedMarket(clock, price=100.0))
    async with application:
        yield application


async def run_all(app: App) -> int:
    ran = 0
    while await app.worker.run_one():
        ran += 1
    return ran


async def test_a_handler_runs_and_its_result_is_kept(app: App) -> None:
    published = app.tasks.publish(app.tasks.spec("fetch_data", {"symbol": "btc/usdt", "limit": 3}))
    assert await run_all(app) == 1
    task = app.queue.get(published.task.id)
    assert task.status == "COMPLETED" and task.attempts == 1 and len(task.result["rows"]) == 3


async def test_a_waiter_wakes_on_the_write_that_finishes_its_task_not_on_a_poll(app: App) -> None:
    app.tasks.look_interval = 3600.0  # no second look within the test: only the queue's own signal can end it
    published = app.tasks.publish(app.tasks.spec("system.sleep", {"seconds": 0}))
    seen: list[str] = []

    async def progress(done: float, message: str) -> None:
        seen.append(message.split()[0])

    async def waiter() -> None:
        waited = await app.tasks.wait(published.task.id, 600, progress)
        assert waited.finished and waited.task.status == "COMPLETED"

    with anyio.fail_after(10):  # without the signal the waiter would sleep its hour
        async with anyio.create_task_group() as group:
            group.start_soon(waiter)
            await anyio.sleep(0.05)
            await run_all(app)
    assert seen[0] == "PENDING" and seen[-1] == "COMPLETED"
    assert not app.queue._watchers  # the wait stopped watching


async def test_an_idle_worker_starts_a_task_published_in_its_process_at_once(app: App) -> None:
    """With an hour between polls, only the queue's in-process signal can start the task this soon;
    a claim that finds nothing wakes nobody (idle slots do not wake each other in a loop)."""
    app.worker.poll_interval = 3600.0
    claims = 0
    claim = app.queue.claim

    def counted(worker_id: str) -> Any:
        nonlocal claims
        claims += 1
        return claim(worker_id)

    app.queue.claim = counted  # type: ignore[method-assign]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(app.worker.run)
            await anyio.sleep(0.3)
            assert claims == app.worker.concurrency  # each slot looked once, found nothing, and waits
            spec = app.tasks.spec("system.sleep", {"seconds": 0})
            published = await anyio.to_thread.run_sync(app.tasks.publish, spec)  # as a sync tool does
            while app.queue.get(published.task.id).status != "COMPLETED":
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    assert not app.queue._runnable_watchers  # the worker stopped watching


async def test_a_run_past_its_timeout_is_cancelled_then_retried_then_failed(app: App, clock: ManualClock) -> None:
    published = app.tasks.publish(app.tasks.spec("system.sleep", {"seconds": 30}, timeout=0.2, max_retries=1))
    await run_all(app)
    task = app.queue.get(published.task.id)
    assert task.status == "TIMED_OUT" and "timed out after 0.2 s" in (task.error or "")
    clock.advance(120)
    await run_all(app)
    assert app.queue.get(published.task.id).status == "FAILED"


async def test_handler_errors_are_recorded_with_their_code(app: App, clock: ManualClock) -> None:
    published = app.tasks.publish(app.tasks.spec("market_analysis", {"symbol": "NOPE/USDT"}, max_retries=0))
    await run_all(app)
    task = app.queue.get(published.task.id)
    assert task.status == "FAILED" and (task.error or "").startswith("not_found: unknown symbol NOPE/USDT")


async def test_a_price_alert_waits_without_spending_attempts_and_fires_once(app: App, clock: ManualClock) -> None:
    market = app.market.source
    assert isinstance(market, ScriptedMarket)
    published = app.tasks.publish(app.tasks.spec("price_alert", {"symbol": "BTC/USDT", "below": 90,
                                                                 "check_every": 60}))
    await run_all(app)
    waiting = app.queue.get(published.task.id)
    assert waiting.status == "PENDING" and waiting.attempts == 0 and "waiting for <= 90" in waiting.result["waiting"]
    market.set_price(89.5)
    clock.advance(61)
    await run_all(app)
    fired = app.queue.get(published.task.id)
    assert fired.status == "COMPLETED" and fired.result["fired"] is True and fired.result["price"] == 89.5


@pytest.mark.parametrize(("name", "payload", "message"), [
    ("make_coffee", {}, "unknown task handler"), ("system.sleep", [1, 2], "must be a JSON object"),
    ("system.sleep", {"seconds": -1}, "invalid payload"), ("price_alert", {"symbol": "BTC/USDT"}, "exactly one"),
])
async def test_bad_publishes_are_refused(app: App, name: str, payload: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        app.tasks.spec(name, payload)
    if name == "make_coffee":
        assert caught.value.hint is not None and "market_analysis" in caught.value.hint


async def test_bad_task_options_are_refused(app: App) -> None:
    for options in ({"timeout": -1}, {"expires_in": 0}, {"max_retries": 99}, {"priority": "ASAP"}):
        with pytest.raises(InvalidInput):
            app.tasks.spec("system.sleep", {"seconds": 0}, **options)  # type: ignore[arg-type]


async def test_a_schedule_publishes_once_per_period_and_never_piles_up(app: App, clock: ManualClock) -> None:
    published = app.tasks.publish(app.tasks.spec("system.sleep", {"seconds": 0}), schedule=60)
    assert published.schedule_id is not None
    assert app.scheduler.tick() == 0  # the first one was published at once
    clock.advance(61)
    assert app.scheduler.tick() == 0  # the first task is still waiting: nothing piles up
    await run_all(app)
    clock.advance(600)  # "the server was down" for ten periods
    assert app.scheduler.tick() == 1 and app.scheduler.tick() == 0
    assert len(app.queue.list(name="system.sleep")) == 2


def test_cron_expressions() -> None:
    at = datetime(2026, 11, 26, 10, 7, 30, tzinfo=UTC).timestamp()
    assert next_cron(parse_cron("*/15 * * * *"), at) == datetime(2026, 11, 26, 10, 15, tzinfo=UTC).timestamp()
    assert next_cron(parse_cron("0 9 * * 1"), at) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp()
    assert next_cron(parse_cron("30 0 1 1 *"), at) == datetime(2027, 1, 1, 0, 30, tzinfo=UTC).timestamp()
    assert parse_schedule("3600") == (3600.0, None) and parse_schedule("*/5 * * * *") == (None, "*/5 * * * *")
    for bad in ("* * *", "61 * * * *", "*/0 * * * *", "a b c d e", "1"):
        with pytest.raises(InvalidInput):
            parse_schedule(bad)


class Receiver:
    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


async def test_a_finished_task_posts_a_signed_webhook(tmp_path: Path, clock: ManualClock,
                                                      receiver: Receiver) -> None:
    async with make_app(tmp_path, clock, ScriptedMarket(clock), webhook_allow_private=True) as app:
        published = app.tasks.publish(app.tasks.spec("system.sleep", {"seconds": 0}, callback_url=receiver.url))
        await run_all(app)
        assert await app.webhooks.deliver_due() == 1
        assert await app.webhooks.deliver_due() == 0  # delivered once
    headers, body = receiver.seen[0]
    assert headers["x-heablcoin-signature"] == sign(SECRET, headers["x-heablcoin-timestamp"], body)
    summary = json.loads(body)
    assert summary["id"] == published.task.id and summary["status"] == "COMPLETED"


async def test_webhooks_refuse_private_targets_and_need_a_secret(tmp_path: Path, clock: ManualClock) -> None:
    async with make_app(tmp_path, clock, ScriptedMarket(clock)) as app:
        for url in ("http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "ftp://x/y",
                    "http://[::127.0.0.1]/x", "http://[::ffff:0:127.0.0.1]/x", "http://[64:ff9b::7f00:1]/x",
                    "http://[2002:7f00:1::]/x", "http://[::169.254.169.254]/x"):
            with pytest.raises(InvalidInput):
                app.tasks.spec("system.sleep", {"seconds": 0}, callback_url=url)
    async with make_app(tmp_path / "3", clock, ScriptedMarket(clock), webhook_allow_private=True) as app:
        with pytest.raises(InvalidInput, match="never allowed"):  # allowing private targets never allows metadata
            app.tasks.spec("system.sleep", {"seconds": 0}, callback_url="http://[::169.254.169.254]/latest")
    async with make_app(tmp_path / "2", clock, ScriptedMarket(clock), webhook_secret=None) as app:
        with pytest.raises(ConfigError, match="HEABLCOIN_WEBHOOK_SECRET"):
            app.tasks.spec("system.sleep", {"seconds": 0}, callback_url="https://example.com/hook")


async def test_failed_deliveries_are_retried_with_backoff(tmp_path: Path, clock: ManualClock) -> None:
    async with make_app(tmp_path, clock, ScriptedMarket(clock), webhook_allow_private=True) as app:
        app.tasks.publish(app.tasks.spec("system.sleep", {"seconds": 0}, callback_url="http://127.0.0.1:9/closed"))
        await run_all(app)
        assert await app.webhooks.deliver_due() == 0
        row = app.db.conn.execute("SELECT attempts, status, next_attempt FROM webhook_deliveries").fetchone()
        assert (row[0], row[1]) == (1, "pending") and row[2] > clock.now()
        assert await app.webhooks.deliver_due() == 0  # not due yet
        assert app.db.conn.execute("SELECT attempts FROM webhook_deliveries").fetchone()[0] == 1


async def test_a_delivery_being_sent_by_one_process_is_not_sent_by_another(tmp_path: Path, clock: ManualClock,
                                                                           receiver: Receiver) -> None:
    async with make_app(tmp_path, clock, ScriptedMarket(clock), webhook_allow_private=True) as app:
        app.tasks.publish(app.tasks.spec("system.sleep", {"seconds": 0}, callback_url=receiver.url))
        await run_all(app)
        delivery = app.db.conn.execute("SELECT id FROM webhook_deliveries").fetchone()[0]
        assert app.webhooks._claim(delivery, clock.now()) is True  # another process took it
        assert await app.webhooks.deliver_due() == 0 and receiver.seen == []
        clock.advance(31)  # that process died mid-send: the delivery is due again
        assert await app.webhooks.deliver_due() == 1 and len(receiver.seen) == 1
