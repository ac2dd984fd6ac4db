"""TaskService: what the tasks tools call — validated publishing, schedules, waiting."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import BaseModel, Field

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.tasks.handlers import HandlerRegistry
from heablcoin_mcp.core.tasks.queue import FINAL, TaskQueue, TaskView
from heablcoin_mcp.core.tasks.scheduler import Scheduler, parse_schedule
from heablcoin_mcp.core.tasks.specs import TaskSpec, parse_priority
from heablcoin_mcp.core.tasks.webhooks import Webhooks
from heablcoin_mcp.errors import InvalidInput

MAX_TAGS = 20
MAX_PAYLOAD_CHARS = 64_000
MAX_PARENTS = 100
MAX_EXPIRY = 90 * 86400.0


class Published(BaseModel):
    task: TaskView
    schedule_id: str | None = Field(None, description="set when the task repeats on a schedule")
    message: str


class Waited(BaseModel):
    task: TaskView
    finished: bool = Field(description="false when the wait timed out first (the task goes on)")
    waited_seconds: float


class TaskService:
    def __init__(self, queue: TaskQueue, handlers: HandlerRegistry, scheduler: Scheduler, webhooks: Webhooks,
                 clock: Clock, *, look_interval: float = 0.5) -> None:
        """``look_interval``: seconds between looks at a waited task, for changes made by other processes."""
        self.queue, self.handlers, self.scheduler, self.webhooks, self.clock = (queue, handlers, scheduler,
                                                                                webhooks, clock)
        self.look_interval = look_interval

    def spec(self, name: str, payload: object, *, priority: object = "NORMAL", timeout: float | None = None,
             expires_in: float | None = None, depends_on: list[str] | None = None, max_retries: int = 3,
             tags: list[str] | None = None, callback_url: str | None = None) -> TaskSpec:
        """A validated task specification. Raises InvalidInput naming the first problem."""
        model = self.handlers.payload(name, payload)
        if timeout is not None and not 0 < timeout <= 86400:
            raise InvalidInput(f"timeout must be between 0 and 86400 seconds, got {timeout}")
        if expires_in is not None and not 0 < expires_in <= MAX_EXPIRY:
            raise InvalidInput(f"expires_in must be between 0 and {MAX_EXPIRY:g} seconds, got {expires_in}")
        if not 0 <= max_retries <= 20:
            raise InvalidInput(f"max_retries must be between 0 and 20, got {max_retries}")
        stored = model.model_dump(mode="json")
        if len(json.dumps(stored)) > MAX_PAYLOAD_CHARS:
            raise InvalidInput(f"payload is over {MAX_PAYLOAD_CHARS} characters of JSON",
                               hint="Pass references (symbols, task ids), not data; fetch_data fetches candles itself.")
        if len(depends_on or ()) > MAX_PARENTS:
            raise InvalidInput(f"a task may depend on at most {MAX_PARENTS} tasks")
        tags = [t.strip() for t in tags or [] if t.strip()]
        if len(tags) > MAX_TAGS or any(len(t) > 40 for t in tags):
            raise InvalidInput(f"at most {MAX_TAGS} tags of up to 40 characters")
        return TaskSpec(name=name, payload=stored, priority=parse_priority(priority),
                        tags=tuple(tags), max_retries=max_retries, timeout=timeout,
                        expires_at=self.clock.now() + expires_in if expires_in else None,
                        depends_on=tuple(depends_on or ()),
                        callback_url=self.webhooks.check(callback_url) if callback_url else None)

    @staticmethod
    def alert_schedule(name: str, payload: object, schedule: object) -> tuple[object, object]:
        """A price alert repeats its own check until it fires: "every hour" is its check interval,
        not a new alert each hour that checks every minute. Returns (payload, schedule) to store."""
        if name != "price_alert" or schedule is None or schedule == "" or not isinstance(payload, dict):
            return payload, schedule
        every, cron = parse_schedule(schedule)
        if every is None:
            raise InvalidInput(f"a price alert checks at an interval, not on a cron schedule ({cron})",
                               hint="Give schedule (or payload check_every) as seconds, e.g. 3600 for hourly.")
        given = payload.get("check_every")
        if given is not None and float(given) != every:
            raise InvalidInput(f"schedule {every:g} s and check_every {given} disagree",
                               hint="Give one of them: both set how often the alert checks the price.")
        return {**payload, "check_every": every}, None

    def publish(self, spec: TaskSpec, schedule: object = None) -> Published:
        if schedule is not None and schedule != "":
            if spec.depends_on:
                raise InvalidInput("a scheduled task cannot depend on other tasks")
            schedule_id, task_id = self.scheduler.add(spec, schedule)
            return Published(task=self.queue.get(task_id), schedule_id=schedule_id,
                             message=f"published now and repeating on schedule {schedule_id}")
        (task_id,) = self.queue.publish([spec])
        task = self.queue.get(task_id)
        waiting = f", waiting for {task.waiting_on} dependenc{'y' if task.waiting_on == 1 else 'ies'}" \
            if task.waiting_on else ""
        return Published(task=task, message=f"queued {task.name} as {task.id}{waiting}")

    async def wait(self, task_id: str, timeout: float,
                   progress: Callable[[float, str], Awaitable[None]] | None = None) -> Waited:
        """Wait until the task finishes or ``timeout`` passes; never blocks the event loop. A write of
        the queue in this process wakes the wait at once; another process's is seen at the next look."""
        if not 0 < timeout <= 600:
            raise InvalidInput("timeout must be between 0 and 600 seconds")
        started = anyio.current_time()  # real waiting: the worker runs in real time too
        last_status = ""
        woken = [anyio.Event()]
        stop = self.queue.watch(lambda: woken[0].set())
        try:
            while True:
                task = self.queue.get(task_id)
                waited = anyio.current_time() - started
                if task.status != last_status and progress is not None:
                    await progress(min(waited, timeout), f"{task.status} (attempt {task.attempts})")
                    last_status = task.status
                if task.status in FINAL or waited >= timeout:
                    return Waited(task=task, finished=task.status in FINAL, waited_seconds=round(waited, 3))
                with anyio.move_on_after(min(self.look_interval, max(0.01, timeout - waited))):
                    await woken[0].wait()
                woken[0] = anyio.Event()
        finally:
            stop()

    def handler_names(self) -> list[dict[str, Any]]:
        return [{"name": n, "description": self.handlers.get(n).description} for n in self.handlers.names()]
