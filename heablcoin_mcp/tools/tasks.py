"""Toolset `tasks`: hand off work that outlives a chat turn to the persistent queue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.tasks.queue import TaskView
from heablcoin_mcp.core.tasks.specs import parse_priority
from heablcoin_mcp.core.tasks.taskflow import Published, Waited
from heablcoin_mcp.tools._types import READ_ONLY, NameList, Upper

QUEUES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
CANCELS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
TaskId = Annotated[str, Field(description="Task id (tsk_…).", min_length=4, max_length=64)]
Status = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT"]


class TasksResult(BaseModel):
    count: int
    tasks: list[TaskView]


class Stats(BaseModel):
    stats: dict[str, Any]
    handlers: list[dict[str, Any]] = Field(description="task names this server can run")


class Cancelled(BaseModel):
    task: TaskView
    dependents_affected: int = Field(description="cancelled (cascade) or released (no cascade)")


class Cleaned(BaseModel):
    expired: int
    deleted: int = Field(description="finished tasks older than the retention window, deleted")


def register(server: MCPServer, app: App) -> None:
    tasks = app.tasks
    queue = app.queue

    @server.tool(title="Publish task", annotations=QUEUES)
    def publish_enhanced_task(
        name: Annotated[str, Field(description="Handler: market_analysis, fetch_data, generate_report, "
                                               "price_alert, ai_analysis or system.sleep.")],
        payload: Annotated[dict[str, Any], Field(description="Handler arguments, e.g. {'symbol': 'BTC/USDT', "
                                                             "'timeframe': '4h'}.")] = {},  # noqa: B006
        priority: Annotated[str | int, Field(description="LOW, NORMAL, HIGH, URGENT (or 1-4).")] = "NORMAL",
        timeout: Annotated[float | None, Field(description="Seconds one run may take.")] = None,
        expires_in: Annotated[float | None, Field(description="Seconds it may wait in the queue before "
                                                              "expiring.")] = None,
        depends_on: Annotated[NameList, Field(description="Task ids that must complete first.")] = [],  # noqa: B006
        max_retries: Annotated[int, Field(description="Retries after the first run (0-20).")] = 3,
        tags: Annotated[NameList, Field(description="Labels to filter by.")] = [],  # noqa: B006
        schedule: Annotated[str | float | None,
                            Field(description="Repeat: seconds (e.g. 3600) or cron '*/15 * * * *' (UTC).")] = None,
        callback_url: Annotated[str | None, Field(description="POST the signed result here when it finishes.")]
        = None,
    ) -> Published:
        """Queue work that outlives this chat turn: "analyse these symbols overnight", "fetch data, then
        analyse, then report" (chain with depends_on), "alert me when BTC drops below 60k"
        (price_alert with below=60000, fires once), "every hour check my alerts" (schedule=3600).
        Tasks survive restarts; a killed worker's task is picked up again. Follow with
        wait_for_task or get_enhanced_task."""
        payload, schedule = tasks.alert_schedule(name, payload, schedule)
        spec = tasks.spec(name, payload, priority=priority, timeout=timeout, expires_in=expires_in,
                          depends_on=depends_on, max_retries=max_retries, tags=tags, callback_url=callback_url)
        return tasks.publish(spec, schedule)

    @server.tool(title="List tasks", annotations=READ_ONLY)
    def list_enhanced_tasks(
        status: Annotated[Status | None, Upper, Field(description="Only this status.")] = None,
        priority_min: Annotated[str | int | None, Field(description="At least this priority.")] = None,
        tags: Annotated[NameList | None, Field(description="Having all these tags.")] = None,
        name: Annotated[str | None, Field(description="Only this handler.")] = None,
        limit: Annotated[int, Field(description="Newest first, 1-500.", ge=1, le=500)] = 50,
    ) -> TasksResult:
        """Tasks, newest first, with status, attempts, dependencies and (when finished) result or error."""
        found = queue.list(status=status, priority_min=parse_priority(priority_min) if priority_min else None,
                           tags=tags or [], name=name, limit=limit)
        return TasksResult(count=len(found), tasks=found)

    @server.tool(title="Get task", annotations=READ_ONLY)
    def get_enhanced_task(task_id: TaskId) -> TaskView:
        """One task: status, result or error, attempts, its dependencies and how many are still unfinished."""
        return queue.get(task_id)

    @server.tool(title="Task stats", annotations=READ_ONLY)
    def get_enhanced_task_stats() -> Stats:
        """Queue totals by status and priority, running and expired counts, oldest waiting age, average and
        p95 run time, throughput over the last minute and hour, and the handlers this server runs."""
        return Stats(stats=queue.stats(), handlers=tasks.handler_names())

    @server.tool(title="Cancel task", annotations=CANCELS)
    def cancel_enhanced_task(
        task_id: TaskId,
        cascade: Annotated[bool, Field(description="Also cancel tasks that depend on it (default). False lets "
                                                   "them run without it.")] = True,
    ) -> Cancelled:
        """Cancel a waiting or running task; a running handler's late result is ignored. By default the tasks
        that depend on it are cancelled too, so none waits forever."""
        task, affected = queue.cancel(task_id, cascade=cascade)
        return Cancelled(task=task, dependents_affected=affected)

    @server.tool(title="Retry task", annotations=QUEUES)
    def retry_enhanced_task(task_id: TaskId) -> TaskView:
        """Queue a FAILED, TIMED_OUT, CANCELLED or EXPIRED task again with its attempts reset to 0. Its
        dependencies must not be dead; dependents cancelled with it need retrying too."""
        return queue.retry(task_id)

    @server.tool(title="Clean up tasks", annotations=CANCELS)
    def cleanup_expired_tasks() -> Cleaned:
        """Mark waiting tasks past their expiry EXPIRED (cancelling their dependents), and delete finished
        tasks older than seven days."""
        expired, deleted = queue.cleanup()
        return Cleaned(expired=expired, deleted=deleted)

    @server.tool(title="Wait for task", annotations=READ_ONLY)
    async def wait_for_task(
        task_id: TaskId,
        ctx: Context,
        timeout: Annotated[float, Field(description="Seconds to wait (1-600); the task goes on after.", gt=0,
                                        le=600)] = 30,
    ) -> Waited:
        """Wait (without blocking the server) until a task finishes or the timeout passes, reporting its
        status as progress. Returns the task with its result; `finished` false means still going."""
        async def progress(done: float, message: str) -> None:
            await ctx.report_progress(done, timeout, message)

        return await tasks.wait(task_id, timeout, progress)

    @server.resource("heablcoin://tasks/{task_id}", name="task", title="A task", mime_type="application/json")
    def task_resource(task_id: str) -> str:
        """One task as JSON (status, result, dependencies)."""
        return queue.get(task_id).model_dump_json()



