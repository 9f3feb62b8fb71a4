"""The fork server: workers forked from one process that imported torch once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gensyn_jupyter.provider._forkserver import ForkedProcess, ForkServer
from gensyn_jupyter.provider._pool import WorkerPool, worker_environment


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    env = worker_environment(home=tmp_path / "home", threads=1)
    pool = WorkerPool(env=env, cwd=tmp_path, size=1)
    yield pool
    pool.close()


def test_forked_worker_is_ready_and_reports_its_exit(pool: WorkerPool) -> None:
    worker = pool.take(timeout=120)
    assert isinstance(worker.proc, ForkedProcess)
    # a forked worker is ready at once: the next one forks in well under a second
    started = time.monotonic()
    pool.replenish()
    second = pool.take(timeout=120)
    assert time.monotonic() - started < 5.0
    assert second.proc.pid != worker.proc.pid
    # an empty job line: the worker has nothing to do and exits with 0
    assert worker.proc.stdin is not None
    worker.proc.stdin.close()
    assert worker.proc.wait(timeout=30) == 0
    # its own process group: kill() takes it down, and the server reports the signal
    assert os.getpgid(second.proc.pid) == second.proc.pid
    second.kill()
    assert second.proc.wait(timeout=30) == -signal.SIGKILL


def test_children_die_with_the_server_and_the_pool_starts_another(pool: WorkerPool) -> None:
    worker = pool.take(timeout=120)
    server = pool._server
    assert server is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    assert worker.proc.wait(timeout=30) == -signal.SIGKILL
    assert _gone(worker.proc.pid)
    fresh = pool.take(timeout=120)  # a new server, a new fork
    assert isinstance(fresh.proc, ForkedProcess) and pool._server is not server
    fresh.kill()


def test_without_fork_the_pool_starts_cold_workers(tmp_path: Path) -> None:
    env = worker_environment(home=tmp_path / "home", threads=1)
    pool = WorkerPool(env=env, cwd=tmp_path, size=1, fork=False)
    try:
        worker = pool.take(timeout=120)
        assert not isinstance(worker.proc, ForkedProcess)
        worker.kill()
    finally:
        pool.close()


def test_a_spawn_request_to_a_dead_server_fails_cleanly(tmp_path: Path) -> None:
    env = worker_environment(home=tmp_path / "home", threads=1)
    server = ForkServer(env=env, cwd=tmp_path)
    try:
        assert server.wait_ready(120)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        read_fd, write_fd = os.pipe()
        with pytest.raises((RuntimeError, OSError)):
            server.spawn(control_fd=write_fd, timeout=5)
        os.close(read_fd)
    finally:
        server.close()
