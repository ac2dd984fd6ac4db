"""The worker pool: claim, run with a timeout while renewing the lease, record the outcome.

Runs inside the server process (``HEABLCOIN_WORKER_CONCURRENCY`` slots) or alone as
``heablcoin-mcp worker``; several processes (on several hosts, with PostgreSQL) can share one
database safely because every claim is a single write transaction. An idle slot waits
``poll_interval``, and is woken at once when this process makes a task runnable (a publish from the
server's tools); on PostgreSQL the queue's NOTIFY wakes it for every process's, and it polls only
every ``LISTENING_POLL`` seconds as a fallback (tasks whose backoff ends). Maintenance (reaping lapsed
leases, expiring tasks, due schedules, webhook deliveries) runs in every worker process; each step is
idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from heablcoin_mcp.core.monitor.health import ComponentHealth
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.core.storage import Listener
from heablcoin_mcp.core.tasks.handlers import HandlerRegistry, Later, TaskContext
from heablcoin_mcp.core.tasks.queue import CHANNEL, TaskQueue, TaskView
from heablcoin_mcp.core.tasks.scheduler import Scheduler
from heablcoin_mcp.core.tasks.webhooks import Webhooks
from heablcoin_mcp.errors import Busy, HeablError

log = logging.getLogger(__name__)
RECORD_ATTEMPTS = 6
LISTENING_POLL = 5.0


class Worker:
    def __init__(self, queue: TaskQueue, handlers: HandlerRegistry, scheduler: Scheduler, webhooks: Webhooks, *,
                 concurrency: int = 2, poll_interval: float = 0.5,
                 sleep: Callable[[float], Awaitable[Any]] = anyio.sleep, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.queue, self.handlers, self.scheduler, self.webhooks = queue, handlers, scheduler, webhooks
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.worker_id = f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self._wake: anyio.Event | None = None  # while running: set when a task became runnable (here, or NOTIFYed)
        self._listening = False  # a LISTEN connection feeds _wake: polling can be rare

    def health(self) -> ComponentHealth:
        try:
            stats = self.queue.stats()
        except Exception as exc:  # health must report, not raise
            return ComponentHealth(name="tasks", status="down", detail=type(exc).__name__)
        waiting = stats["by_status"].get("PENDING", 0) + stats["by_status"].get("TIMED_OUT", 0)
        return ComponentHealth(name="tasks", status="ok",
                               detail=f"{self.concurrency} worker slot(s) in this process; {waiting} waiting, "
                                      f"{stats['running']} running",
                               metrics={"waiting": waiting, "running": stats["running"],
                                        "worker_slots": self.concurrency})

    async def run(self) -> None:
        """Run until cancelled."""
        self._wake = anyio.Event()
        stop = self.queue.watch(self._wake_slots, runnable_only=True)  # a task made runnable in this process
        try:
            async with anyio.create_task_group() as tg:
                listener = self.queue.db.listener(CHANNEL)
                if listener is not None:
                    tg.start_soon(self._listen, listener)
                tg.start_soon(self._maintain)
                for slot in range(self.concurrency):
                    tg.start_soon(self._slot, slot)
        finally:
            stop()

    async def _slot(self, slot: int) -> None:
        while True:
            try:
                ran = await self.run_one(f"{self.worker_id}/{slot}")
            except Exception:  # a busy database or a bug in one claim must not stop the slot
                log.exception("task slot %d: claim failed; trying again", slot)
                ran = False
            if not ran:
                await self._idle()

    async def _idle(self) -> None:
        assert self._wake is not None, "slots run inside run()"
        with anyio.move_on_after(max(self.poll_interval, LISTENING_POLL) if self._listening else self.poll_interval):
            await self._wake.wait()

    def _wake_slots(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = anyio.Event()

    async def _listen(self, listener: Listener) -> None:
        """Turn each notification into a wake-up of every idle slot; a lost connection is reopened
        (meanwhile the slots poll)."""
        self._listening = True
        try:
            while True:
                try:
                    woken = await listener.wait(LISTENING_POLL)
                except Exception:  # a dropped connection must not stop the worker
                    log.warning("task notifications lost; reconnecting", exc_info=True)
                    self._listening = False
                    await listener.aclose()
                    await self.sleep(self.poll_interval)
                    continue
                self._listening = True
                if woken:
                    self._wake_slots()
        finally:
            self._listening = False
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _maintain(self) -> None:
        while True:
            await self.maintain()
            await self.sleep(self.poll_interval)

    async def maintain(self) -> None:
        try:
            self.queue.reap()
            self.queue.expire()
            self.scheduler.tick()
            await self.webhooks.deliver_due()
        except Exception:  # maintenance must outlive one bad round
            log.exception("task maintenance failed")

    async def run_one(self, worker_id: str | None = None) -> bool:
        """Claim and run one task; False when nothing was runnable."""
        worker_id = worker_id or self.worker_id
        began = time.perf_counter()
        task = self.queue.claim(worker_id)
        self.metrics.observe("heablcoin_task_claim_seconds", time.perf_counter() - began)
        if task is None:
            return False
        await self._run(task, worker_id)
        return True

    async def _run(self, task: TaskView, worker_id: str) -> None:
        try:
            handler = self.handlers.get(task.name)
            payload = self.handlers.payload(task.name, task.payload)
        except HeablError as exc:
            self.queue.fail(task.id, worker_id, f"{exc.code}: {exc.message}")
            return
        outcome: Any = None
        error: str | None = None
        timed_out = lost = False
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            lease_lost = anyio.Event()
            tg.start_soon(self._renew, task.id, worker_id, lease_lost, tg.cancel_scope)
            try:
                with anyio.fail_after(task.timeout) if task.timeout else contextlib.nullcontext():
                    outcome = await handler.fn(payload, TaskContext(task, self.queue, worker_id))
            except TimeoutError:
                timed_out, error = True, f"timed out after {task.timeout:g} s"
            except HeablError as exc:
                error = f"{exc.code}: {exc.message}"
            except Exception as exc:  # a handler bug must not kill the worker
                log.exception("task %s (%s) crashed", task.id, task.name)
                error = f"internal: {type(exc).__name__}"
            lost = lease_lost.is_set()
            tg.cancel_scope.cancel()
        self.metrics.observe("heablcoin_task_run_seconds", time.perf_counter() - began, task.name)
        if lost:
            self.metrics.count("heablcoin_task_runs", task.name, "lease_lost")
            return  # reaped or cancelled meanwhile: the queue's record wins
        if error is not None:
            self.metrics.count("heablcoin_task_runs", task.name, "timed_out" if timed_out else "failed")
            await self._record(self.queue.fail, task.id, worker_id, error, timed_out=timed_out)
        elif isinstance(outcome, Later):
            self.metrics.count("heablcoin_task_runs", task.name, "rescheduled")
            await self._record(self.queue.reschedule, task.id, worker_id, outcome.after_seconds, outcome.note)
        else:
            self.metrics.count("heablcoin_task_runs", task.name, "completed")
            await self._record(self.queue.complete, task.id, worker_id, outcome)

    async def _record(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Record an outcome, waiting out a busy database for a while; if it stays busy the lease
        lapses and the task runs again (at-least-once), which beats losing the worker."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                write(*args, **kwargs)
                return
            except Busy:
                log.warning("database busy while recording a task outcome (attempt %d)", attempt + 1)
                await self.sleep(self.poll_interval * 2 ** attempt)

    async def _renew(self, task_id: str, worker_id: str, lost: anyio.Event, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(self.queue.policy.lease_seconds / 3)
            try:
                renewed = self.queue.renew(task_id, worker_id)
            except Busy:  # try again at the next third of the lease
                log.warning("database busy while renewing the lease of %s", task_id)
                continue
            if not renewed:
                lost.set()
                scope.cancel()
                return
