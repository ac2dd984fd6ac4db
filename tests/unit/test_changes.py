"""The change feed's task side: only watched tasks are read, and a watched task's every state move
is news exactly once."""

from __future__ import annotations

import pytest

from heablcoin_mcp.core.changes import MAX_IDS_PER_READ, ChangeFeed, task_path
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.tasks.queue import QueuePolicy, TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.both_engines
SLEEP = TaskSpec("system.sleep", {"seconds": 0})


@pytest.fixture
def queue(storage: Storage, clock: ManualClock) -> TaskQueue:
    return TaskQueue(storage, clock, QueuePolicy(retention_seconds=60))


def test_each_state_move_of_a_watched_task_is_news_once(queue: TaskQueue, clock: ManualClock) -> None:
    feed = ChangeFeed(queue.db)
    watched, other = queue.publish([SLEEP, SLEEP])
    assert feed.poll({watched}) == []  # the first look is the starting point
    clock.advance(1)
    task = queue.claim("w")
    assert task is not None and task.id == watched
    assert feed.poll({watched}) == [task_path(watched)]
    assert feed.poll({watched}) == []
    clock.advance(1)
    queue.complete(watched, "w", {})
    moved = queue.claim("w")
    assert moved is not None and moved.id == other  # the other one moves too, unwatched
    assert feed.poll({watched}) == [task_path(watched)]


def test_a_task_first_seen_at_a_poll_is_its_starting_point(queue: TaskQueue, clock: ManualClock) -> None:
    feed = ChangeFeed(queue.db)
    assert feed.poll() == []
    (task_id,) = queue.publish([SLEEP])
    clock.advance(1)
    queue.claim("w")
    assert feed.poll({task_id}) == []  # it was not watched when it moved
    clock.advance(1)
    queue.complete(task_id, "w", {})
    assert feed.poll({task_id}) == [task_path(task_id)]


def test_watching_takes_the_starting_point_at_once(queue: TaskQueue, clock: ManualClock) -> None:
    """A subscription's starting point is when it was made, not the next poll: a move in between is news."""
    feed = ChangeFeed(queue.db)
    assert feed.poll() == []
    (task_id,) = queue.publish([SLEEP])
    feed.watch_tasks({task_id})
    clock.advance(1)
    queue.claim("w")
    assert feed.poll({task_id}) == [task_path(task_id)]


def test_a_deleted_task_is_news_and_an_unknown_id_is_not(queue: TaskQueue, clock: ManualClock) -> None:
    feed = ChangeFeed(queue.db)
    (task_id,) = queue.publish([SLEEP])
    assert feed.poll({task_id, "tsk_none"}) == []
    queue.claim("w")
    queue.complete(task_id, "w", {})
    assert feed.poll({task_id, "tsk_none"}) == [task_path(task_id)]
    clock.advance(61)
    assert queue.cleanup() == (0, 1)
    assert feed.poll({task_id, "tsk_none"}) == [task_path(task_id)]
    assert feed.poll({task_id, "tsk_none"}) == []


def test_more_watched_tasks_than_one_read_takes(queue: TaskQueue, clock: ManualClock) -> None:
    feed = ChangeFeed(queue.db)
    ids = queue.publish([SLEEP] * (2 * MAX_IDS_PER_READ + 1))
    assert feed.poll(set(ids)) == []
    clock.advance(1)
    last = max(ids)  # sorted last: in the final read
    queue.cancel(last)
    assert feed.poll(set(ids)) == [task_path(last)]
