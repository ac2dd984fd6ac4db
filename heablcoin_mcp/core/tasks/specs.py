"""What a publisher asks for: a task's spec, its priority, its id, and the batch's dependency check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from heablcoin_mcp.core.tasks.stats import PRIORITY_NAMES
from heablcoin_mcp.errors import InvalidInput

PRIORITIES = {name: level for level, name in PRIORITY_NAMES.items()}


@dataclass
class TaskSpec:
    name: str
    payload: dict[str, Any]
    priority: int = 2
    tags: tuple[str, ...] = ()
    max_retries: int = 3
    timeout: float | None = None
    expires_at: float | None = None
    depends_on: tuple[str, ...] = ()
    callback_url: str | None = None
    key: str | None = None  # a name other specs of the same batch may depend on
    schedule_id: str | None = None


def parse_priority(value: object) -> int:
    """Raises InvalidInput for anything but 1-4 or LOW / NORMAL / HIGH / URGENT."""
    if isinstance(value, str) and value.strip().upper() in PRIORITIES:
        return PRIORITIES[value.strip().upper()]
    if isinstance(value, int | str) and str(value).strip() in ("1", "2", "3", "4"):
        return int(value)
    raise InvalidInput(f"priority must be LOW, NORMAL, HIGH, URGENT or 1-4, got {value!r}")


def new_task_ids(count: int, now: float) -> list[str]:
    """Ids that sort by creation time (a hex millisecond stamp, then 64 random bits): new rows land at
    the end of the primary-key index instead of all over it, which keeps a batch's commit small."""
    stamp = f"{int(now * 1000):011x}"
    noise = secrets.token_bytes(8 * count)
    return [f"tsk_{stamp}{noise[i:i + 8].hex()}" for i in range(0, 8 * count, 8)]


def check_acyclic(specs: list[TaskSpec], ids: dict[str, str]) -> None:
    """Edges within a batch must not form a cycle (edges to existing tasks cannot: those are older)."""
    graph = {spec.key: [d for d in spec.depends_on if d in ids] for spec in specs if spec.key}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise InvalidInput(f"dependency cycle: {' -> '.join([*path, node])}")
        state[node] = 1
        for nxt in graph.get(node, []):
            visit(nxt, [*path, node])
        state[node] = 2

    for key in graph:
        visit(key, [])
