"""Real worker processes sharing one database: no double runs, and nothing lost to a SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from heablcoin_mcp.core.clock import SystemClock
from heablcoin_mcp.core.storage import Database
from heablcoin_mcp.core.tasks.queue import TaskQueue, TaskSpec
from tests.e2e.conftest import SERVER, server_env


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[TaskQueue]:
    db = Database(tmp_path / "home" / "heablcoin.db")
    db.migrate()
    yield TaskQueue(db, SystemClock())
    db.close()


def start_worker(home: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = server_env(home, HEABLCOIN_TASK_POLL_INTERVAL="0.05", **extra)
    return subprocess.Popen([*SERVER, "worker"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_until(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_two_worker_processes_never_run_the_same_task(tmp_path: Path, queue: TaskQueue) -> None:
    ids = queue.publish([TaskSpec(name="system.sleep", payload={"seconds": 0.02}) for _ in range(40)])
    workers = [start_worker(tmp_path / "home", HEABLCOIN_WORKER_CONCURRENCY="3") for _ in range(2)]
    try:
        wait_until(lambda: all(queue.get(i).status == "COMPLETED" for i in ids))
    finally:
        stop(*workers)
    tasks = [queue.get(i) for i in ids]
    assert all(t.attempts == 1 for t in tasks)  # every claim was exclusive: nothing ran twice
    assert len({t.worker_id.split("/")[0] for t in tasks if t.worker_id}) >= 1


def test_a_worker_killed_mid_task_loses_nothing(tmp_path: Path, queue: TaskQueue) -> None:
    (task_id,) = queue.publish([TaskSpec(name="system.sleep", payload={"seconds": 2})])
    first = start_worker(tmp_path / "home", HEABLCOIN_TASK_LEASE_SECONDS="1")
    try:
        wait_until(lambda: queue.get(task_id).status == "RUNNING")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=15)
        dead_worker = queue.get(task_id).worker_id
        assert queue.get(task_id).status == "RUNNING"  # the queue does not know yet
        second = start_worker(tmp_path / "home", HEABLCOIN_TASK_LEASE_SECONDS="1")
        try:
            wait_until(lambda: queue.get(task_id).status == "COMPLETED")
        finally:
            stop(second)
    finally:
        if first.poll() is None:
            stop(first)
    task = queue.get(task_id)
    assert task.attempts == 2 and task.worker_id != dead_worker
    assert task.result["slept"] == 2
