from __future__ import annotations

import contextlib
import random

import pytest

from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.tasks.queue import QueuePolicy, TaskQueue
from heablcoin_mcp.core.tasks.specs import TaskSpec, parse_priority
from heablcoin_mcp.errors import HeablError, InvalidInput, NotFound
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.both_engines

W = "worker-1"


@pytest.fixture
def queue(storage: Storage, clock: ManualClock) -> TaskQueue:
    db = storage
    return TaskQueue(db, clock, QueuePolicy(lease_seconds=30, aging_seconds=300, backoff_base=2, backoff_cap=60),
                     random.Random(3))


def spec(name: str = "system.sleep", **kwargs: object) -> TaskSpec:
    return TaskSpec(name=name, payload={"seconds": 0}, **kwargs)  # type: ignore[arg-type]


def claim_order(queue: TaskQueue) -> list[str]:
    order = []
    while (task := queue.claim(W)) is not None:
        order.append(task.id)
        queue.complete(task.id, W, {})
    return order


def test_priority_first_then_fifo(queue: TaskQueue) -> None:
    low, normal_a, urgent, normal_b, high = queue.publish(
        [spec(priority=1), spec(priority=2), spec(priority=4), spec(priority=2), spec(priority=3)])
    assert claim_order(queue) == [urgent, high, normal_a, normal_b, low]


def test_a_waiting_low_task_ages_past_fresh_high_ones(queue: TaskQueue, clock: ManualClock) -> None:
    (old_low,) = queue.publish([spec(priority=1)])
    clock.advance(3 * 300 + 1)  # three levels of aging: LOW competes as URGENT
    fresh_high = queue.publish([spec(priority=3), spec(priority=3)])
    assert claim_order(queue) == [old_low, *fresh_high]


@pytest.mark.parametrize(("value", "level"), [("low", 1), ("URGENT", 4), (3, 3), ("2", 2)])
def test_priorities_by_name_or_number(value: object, level: int) -> None:
    assert parse_priority(value) == level


@pytest.mark.parametrize("value", ["SOON", 0, 5, None, 2.5])
def test_bad_priorities_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_priority(value)


def test_a_dag_releases_children_only_when_every_parent_completed(queue: TaskQueue) -> None:
    a, b = queue.publish([spec(key="a"), spec(key="b")])
    (c,) = queue.publish([spec(depends_on=(a, b))])
    (d,) = queue.publish([spec(depends_on=(c,))])
    assert queue.get(c).waiting_on == 2 and queue.get(d).waiting_on == 1
    first = queue.claim(W)
    assert first is not None and first.id == a
    queue.complete(a, W, {"x": 1})
    second = queue.claim(W)
    assert second is not None and second.id == b  # c still waits for b
    queue.complete(b, W, {})
    third = queue.claim(W)
    assert third is not None and third.id == c
    assert queue.parent_results(c)[a] == {"name": "system.sleep", "result": {"x": 1}}


def test_a_batch_may_chain_by_key_and_cycles_are_refused(queue: TaskQueue) -> None:
    fetch, analyse, report = queue.publish([spec(key="f"), spec(key="a", depends_on=("f",)),
                                            spec(key="r", depends_on=("a", "f"))])
    assert queue.get(report).depends_on and set(queue.get(report).depends_on) == {fetch, analyse}
    with pytest.raises(InvalidInput, match="cycle"):
        queue.publish([spec(key="x", depends_on=("y",)), spec(key="y", depends_on=("x",))])
    with pytest.raises(InvalidInput, match="depends on itself"):
        queue.publish([spec(key="z", depends_on=("z",))])
    with pytest.raises(NotFound):
        queue.publish([spec(depends_on=("tsk_nope",))])


def test_failure_for_good_cancels_every_descendant(queue: TaskQueue) -> None:
    (root,) = queue.publish([spec(max_retries=0)])
    (child,) = queue.publish([spec(depends_on=(root,))])
    (grandchild,) = queue.publish([spec(depends_on=(child,))])
    (unrelated,) = queue.publish([spec()])
    task = queue.claim(W)
    assert task is not None and task.id == root
    assert queue.fail(root, W, "boom") == "FAILED"
    assert queue.get(child).status == queue.get(grandchild).status == "CANCELLED"
    assert f"dependency {root} failed" in (queue.get(grandchild).error or "")
    assert queue.get(unrelated).status == "PENDING"
    with pytest.raises(InvalidInput, match="could never run"):
        queue.publish([spec(depends_on=(root,))])


def test_expiry_is_checked_at_claim_and_swept_with_its_dependents(queue: TaskQueue, clock: ManualClock) -> None:
    (stale,) = queue.publish([spec(expires_at=clock.now() + 10)])
    (child,) = queue.publish([spec(depends_on=(stale,))])
    clock.advance(11)
    assert queue.claim(W) is None  # expired tasks are never claimed
    assert queue.expire() == 1
    assert queue.get(stale).status == "EXPIRED" and queue.get(child).status == "CANCELLED"


def test_retries_back_off_then_fail(queue: TaskQueue, clock: ManualClock) -> None:
    (task_id,) = queue.publish([spec(max_retries=2)])
    for attempt in (1, 2):
        task = queue.claim(W)
        assert task is not None and task.attempts == attempt
        assert queue.fail(task_id, W, f"error {attempt}") == "PENDING"
        wait = queue.get(task_id).run_after - clock.now()
        assert 0 < wait <= 2 * 2 ** (attempt - 1)  # exponential, jittered
        assert queue.claim(W) is None  # not before the backoff
        clock.advance(wait)
    assert queue.claim(W) is not None
    assert queue.fail(task_id, W, "error 3") == "FAILED"
    assert queue.get(task_id).attempts == 3


def test_a_timeout_is_visible_retried_then_failed(queue: TaskQueue, clock: ManualClock) -> None:
    (task_id,) = queue.publish([spec(max_retries=1)])
    queue.claim(W)
    assert queue.fail(task_id, W, "timed out", timed_out=True) == "TIMED_OUT"
    clock.advance(60)
    again = queue.claim(W)
    assert again is not None and again.id == task_id
    assert queue.fail(task_id, W, "timed out", timed_out=True) == "FAILED"


def test_a_lapsed_lease_returns_the_task_and_the_old_worker_loses_it(queue: TaskQueue, clock: ManualClock) -> None:
    (task_id,) = queue.publish([spec()])
    queue.claim("dead-worker")
    clock.advance(20)
    assert queue.reap() == 0  # lease still valid
    clock.advance(11)
    assert queue.reap() == 1
    assert queue.get(task_id).status == "PENDING" and "lease lapsed" in (queue.get(task_id).error or "")
    clock.advance(60)
    assert queue.claim("new-worker") is not None
    assert queue.complete(task_id, "dead-worker", {"late": True}) is False  # the dead worker's answer is ignored
    assert queue.complete(task_id, "new-worker", {"ok": True}) is True
    assert queue.get(task_id).result == {"ok": True}


def test_cancel_with_and_without_cascade_and_retry(queue: TaskQueue) -> None:
    (parent,) = queue.publish([spec()])
    (child,) = queue.publish([spec(depends_on=(parent,))])
    _, affected = queue.cancel(parent, cascade=False)
    assert affected == 1 and queue.get(child).waiting_on == 0  # released to run without it
    (parent2,) = queue.publish([spec()])
    (child2,) = queue.publish([spec(depends_on=(parent2,))])
    queue.cancel(parent2)
    assert queue.get(child2).status == "CANCELLED"
    with pytest.raises(InvalidInput, match="are dead"):
        queue.retry(child2)
    assert queue.retry(parent2).status == "PENDING"
    retried = queue.retry(child2)
    assert retried.status == "PENDING" and retried.waiting_on == 1 and retried.attempts == 0
    with pytest.raises(InvalidInput, match="only failed"):
        queue.retry(parent2)


def test_cleanup_deletes_only_old_finished_tasks(queue: TaskQueue, clock: ManualClock) -> None:
    done, waiting = queue.publish([spec(), spec(priority=1)])
    queue.claim(W)
    queue.complete(done, W, {})
    clock.advance(8 * 86400)
    assert queue.cleanup() == (0, 1)
    assert queue.get(waiting).status == "PENDING"
    with pytest.raises(NotFound):
        queue.get(done)


def test_stats_count_by_status_and_priority(queue: TaskQueue, clock: ManualClock) -> None:
    queue.publish([spec(priority=4), spec(priority=1), spec(priority=1)])
    task = queue.claim(W)
    assert task is not None
    clock.advance(2)
    queue.complete(task.id, W, {})
    stats = queue.stats()
    assert stats["total"] == 3 and stats["by_status"] == {"COMPLETED": 1, "PENDING": 2}
    assert stats["by_priority"] == {"LOW": 2, "URGENT": 1}
    assert stats["avg_run_seconds"] == 2 and stats["completed_last_minute"] == 1
    assert stats["oldest_pending_age_seconds"] == 2


def test_the_stats_counters_match_a_count_of_the_rows_after_any_mix_of_operations(
        queue: TaskQueue, clock: ManualClock) -> None:
    """task_counts is kept by publish (one statement per priority) and by triggers; after publishes
    (single and batched), claims, completions, failures, cancels with cascades, retries, expiry and
    cleanup it must equal a GROUP BY over the tasks themselves."""
    rng = random.Random(3)
    ids: list[str] = []
    for step in range(600):
        action = rng.random()
        if action < 0.35 or not ids:
            parents = tuple(rng.sample(ids, 1)) if ids and rng.random() < 0.3 else ()
            size = rng.choice([1, 1, 3])  # batches count their priorities in one statement each
            batch = [spec(priority=rng.randint(1, 4), key=f"k{n}", depends_on=parents if n == 0 else (f"k{n - 1}",),
                          expires_at=clock.now() + 30 if rng.random() < 0.1 else None) for n in range(size)]
            with contextlib.suppress(HeablError):  # a parent already cancelled or expired: nothing of it stays
                ids += queue.publish(batch)
        elif action < 0.6:
            task = queue.claim("w")
            if task is not None:
                if rng.random() < 0.7:
                    queue.complete(task.id, "w", {"step": step})
                else:
                    queue.fail(task.id, "w", "boom")
        else:
            chosen = rng.choice(ids)
            with contextlib.suppress(HeablError):
                if action < 0.75:
                    queue.cancel(chosen, cascade=rng.random() < 0.5)
                elif action < 0.85:
                    queue.retry(chosen)
                elif action < 0.95:
                    clock.advance(rng.choice([1, 60, 3600]))
                    queue.expire()
                else:
                    clock.advance(8 * 86_400)
                    queue.cleanup()
        counted = {r[0]: r[1] for r in queue.db.conn.execute("SELECT status, count(*) FROM tasks GROUP BY status")}
        assert queue.stats()["by_status"] == counted, step
